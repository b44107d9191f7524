"""Log-probabilities of sampled responses under any causal LM (policy, reference, old policy).

PPO rollouts and the evaluator both score the same kind of batch: left-padded prompts followed
by right-padded responses. Positions count real tokens only, as in the sampler, so a response
scores the same alone or in a padded batch.
"""

from __future__ import annotations

import torch

from leash.losses.logprobs import token_logps
from leash.rollout.generation import positions_from_mask, restrict_logits


def response_token_logps(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    allowed_token_ids: torch.Tensor | None = None,
    return_logits: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Per-token log π(y_t | x, y_<t) of each response token, 0 on padding.

    Args:
        model: a causal LM (gradients flow when called outside ``torch.no_grad``).
        prompt_ids: (B, P) left-padded prompts.
        prompt_mask: (B, P) 1 on real prompt tokens.
        response_ids: (B, T) responses, padded after EOS.
        response_mask: (B, T) 1 on real response tokens (EOS included).
        allowed_token_ids: (A,) restrict the policy to these tokens, as the sampler did.
        return_logits: also return the (B, T, V) restricted logits at the response positions.
    Returns:
        (B, T) log-probs, and the logits when asked.
    """
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions_from_mask(attention_mask),
    ).logits
    # The token at prompt position P + t is predicted by the logits at P + t - 1.
    width = prompt_ids.shape[1]
    logits = restrict_logits(logits[:, width - 1 : -1, :], allowed_token_ids)
    logps = token_logps(logits, response_ids) * response_mask
    return (logps, logits) if return_logits else logps
