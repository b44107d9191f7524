"""PPO rollouts: sample responses from the policy, then measure them once, without gradients.

Two named steps, timed separately by the PPO loop:

- :func:`sample` draws ``samples_per_prompt`` responses per prompt with the shared KV-cached
  sampler (:func:`leash.rollout.generation.generate`), giving :class:`Responses`; each row draws
  from its own generator (:func:`row_generators`), so a prompt's responses do not depend on
  how the prompts are batched or split over processes;
- :func:`score_rollout` adds what the update needs, all under ``torch.no_grad`` and eval mode
  (no dropout): per-token log-probs and entropies under the sampling policy, reference
  log-probs, critic values (none for a critic-free estimator), and the sequence score of a
  :class:`RewardFn`. The result is a :class:`Rollout`.

Rewards are any :class:`leash.rollout.rewards.RewardFn` (a frozen reward model, or the task's
gold reward for PPO-GT).

Scoring runs in chunks of ``chunk_size`` rows, the PPO minibatch size, so that the rollout-time
forwards see batches of the same shape as the update's forwards.

Shapes: ``B`` rollouts (prompts x samples), ``P`` prompt tokens (left padded), ``T`` response
tokens (right padded; the mask covers the EOS token). Every per-token tensor is 0 on padding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields
from typing import TypeVar

import torch

from leash.losses.ppo import entropy_from_logits
from leash.models.policy_critic import PolicyCritic
from leash.rollout.generation import generate
from leash.rollout.rewards import RewardFn
from leash.sequences import evaluating

# ---------------------------------------------------------------------------------- containers
_Rows = TypeVar("_Rows", bound="Responses")


def _cat(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The rows of every part stacked; None when the field is absent (None) in every part."""
    return None if all(part is None for part in parts) else torch.cat(parts)


@dataclass
class Responses:
    """Sampled responses with their prompts, one row per sample."""

    prompt_ids: torch.Tensor
    """(B, P) left-padded prompts (each prompt repeated ``samples_per_prompt`` times)."""
    prompt_mask: torch.Tensor
    """(B, P) 1 on real prompt tokens."""
    response_ids: torch.Tensor
    """(B, T) sampled tokens, padded after EOS."""
    response_mask: torch.Tensor
    """(B, T) 1 on real response tokens, EOS included."""
    eos_found: torch.Tensor
    """(B,) bool, whether the response ended with EOS (False: cut at the length limit)."""
    sampler_logprobs: torch.Tensor | None = None
    """(B, T) each token's log-prob as the sampler drew it (:class:`Generated`); None when
    the responses come from elsewhere."""

    def __len__(self) -> int:
        return int(self.prompt_ids.shape[0])

    def rows(self: _Rows, index: torch.Tensor | slice) -> _Rows:
        """The same container restricted to some rows (a minibatch or a scoring chunk); a field
        that is None (no critic: no values) stays None."""
        return type(self)(**{
            spec.name: None if (value := getattr(self, spec.name)) is None else value[index]
            for spec in fields(self)
        })

    @classmethod
    def concatenate(cls: type[_Rows], parts: list[_Rows]) -> _Rows:
        """Stack the rows of several containers of this type (inverse of :meth:`rows`)."""
        return cls(
            **{spec.name: _cat([getattr(p, spec.name) for p in parts]) for spec in fields(cls)}
        )

    def model_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prompt_ids, prompt_mask, response_ids, response_mask): what every scorer reads."""
        return self.prompt_ids, self.prompt_mask, self.response_ids, self.response_mask


@dataclass(kw_only=True)
class Rollout(Responses):
    """Responses measured at rollout time: what the PPO update treats as constants."""

    logprobs: torch.Tensor
    """(B, T) log-probs of the response tokens under the sampling policy."""
    ref_logprobs: torch.Tensor
    """(B, T) log-probs of the same tokens under the reference."""
    values: torch.Tensor | None
    """(B, T) critic value of the state before each response token; None without a critic."""
    entropy: torch.Tensor
    """(B, T) entropy of the sampling policy's next-token distribution at each token."""
    scores: torch.Tensor
    """(B,) reward of each response (before any missing-EOS penalty)."""


# ----------------------------------------------------------------------------------- functions
def row_generators(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    samples_per_prompt: int,
    generator: torch.Generator | None = None,
) -> list[torch.Generator]:
    """One generator per rollout row, seeded from the call's base seed (one draw of
    ``generator``, the global RNG when None), the prompt's real tokens and the sample's number.

    A prompt's responses then depend on the prompt and the base only, not on which prompts
    share its batch or its process: N processes sampling a global batch by shards draw what one
    process draws for all of it, as long as their generators agree (seeded alike, and drawn
    from as often; ``leash train`` seeds every process with the run's seed). Two copies of one
    prompt in a call would draw alike: the data module's prompt views are deduplicated.

    Args:
        prompt_ids: (N, P) left-padded prompts.
        prompt_mask: (N, P) 1 on real prompt tokens.
        samples_per_prompt: rows per prompt (adjacent).
        generator: source of the base seed.
    Returns:
        N * samples_per_prompt generators on the prompts' device, in row order.
    """
    device = prompt_ids.device if generator is None else generator.device
    base = int(torch.randint(2**62, (1,), generator=generator, device=device))
    generators = []
    for ids, mask in zip(prompt_ids.tolist(), prompt_mask.tolist(), strict=True):
        tokens = [token for token, real in zip(ids, mask, strict=True) if real]
        for index in range(samples_per_prompt):
            digest = hashlib.blake2b(repr((base, index, tokens)).encode(), digest_size=8)
            seed = int.from_bytes(digest.digest(), "little") >> 1  # manual_seed takes < 2**63
            generators.append(torch.Generator(device=prompt_ids.device).manual_seed(seed))
    return generators


@torch.no_grad()
def sample(
    policy: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    samples_per_prompt: int,
    max_new_tokens: int,
    temperature: float,
    eos_token_id: int,
    pad_token_id: int,
    allowed_token_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Responses:
    """Draw ``samples_per_prompt`` responses per prompt from ``policy`` (eval mode, no grad).

    Args:
        policy: the causal LM to sample.
        prompt_ids: (N, P) left-padded prompts.
        prompt_mask: (N, P) 1 on real prompt tokens.
        samples_per_prompt: rows per prompt; a prompt's samples are adjacent.
        max_new_tokens: cut responses after this many tokens (EOS included).
        temperature: sampling temperature.
        eos_token_id: ends a response.
        pad_token_id: fills responses after EOS.
        allowed_token_ids: (A,) restrict the policy to these tokens.
        generator: source of the base seed of :func:`row_generators` (the global RNG when
            None), from which each row's randomness is derived.
    Returns:
        Responses with B = N * samples_per_prompt rows.
    """
    rows = row_generators(prompt_ids, prompt_mask, samples_per_prompt, generator)
    prompt_ids = prompt_ids.repeat_interleave(samples_per_prompt, dim=0)
    prompt_mask = prompt_mask.repeat_interleave(samples_per_prompt, dim=0)
    generated = generate(
        policy,
        prompt_ids,
        prompt_mask,
        max_new_tokens,
        eos_token_id,
        pad_token_id,
        temperature=temperature,
        generator=rows,
        allowed_token_ids=allowed_token_ids,
    )
    ids, mask = generated.response_ids, generated.response_mask
    eos_found = ((ids == eos_token_id) & (mask > 0)).any(dim=1)
    return Responses(prompt_ids, prompt_mask, ids, mask, eos_found, generated.logprobs)


def _eval_mode(reward_fn: RewardFn) -> AbstractContextManager:
    """Eval mode for a reward that is a network; nothing to switch for a plain function."""
    return evaluating(reward_fn) if isinstance(reward_fn, torch.nn.Module) else nullcontext()


@torch.no_grad()
def score(reward_fn: RewardFn, responses: Responses) -> torch.Tensor:
    """(B,) float32 rewards of the responses, in eval mode and without gradients."""
    with _eval_mode(reward_fn):
        return reward_fn(*responses.model_inputs()).float()


def _chunks(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, start + size)


def _measure(
    models: PolicyCritic,
    reward_fn: RewardFn,
    chunk: Responses,
    temperature: float,
    allowed_token_ids: torch.Tensor | None,
) -> Rollout:
    """The rollout quantities of one chunk of rows (one forward pass per network)."""
    inputs = chunk.model_inputs()
    policy = models.policy_logps(*inputs, allowed_token_ids, temperature)
    return Rollout(
        *inputs,
        chunk.eos_found,
        chunk.sampler_logprobs,
        logprobs=policy.logps,
        ref_logprobs=models.reference_logps(*inputs, allowed_token_ids, temperature),
        values=models.values(*inputs) if models.has_critic else None,
        entropy=entropy_from_logits(policy.logits) * chunk.response_mask,
        scores=score(reward_fn, chunk),
    )


@torch.no_grad()
def score_rollout(
    models: PolicyCritic,
    reward_fn: RewardFn,
    responses: Responses,
    *,
    chunk_size: int,
    temperature: float = 1.0,
    allowed_token_ids: torch.Tensor | None = None,
) -> Rollout:
    """Measure sampled responses once: log-probs, entropies, reference log-probs, values, scores.

    Everything runs in eval mode under ``torch.no_grad``, in chunks of ``chunk_size`` rows, with
    the same temperature and token restriction as the sampler, so that the update's first
    forward on the same rows reproduces ``logprobs`` exactly (ratio 1).

    Args:
        models: policy, reference and critic.
        reward_fn: the sequence reward (learned RM or gold reward).
        responses: B sampled rows.
        chunk_size: rows per forward pass (the PPO minibatch size).
        temperature: the sampling temperature (log-probs are those of the sampled policy).
        allowed_token_ids: (A,) the sampler's token restriction.
    Returns:
        the Rollout of the B rows.
    """
    with evaluating(models):
        return Rollout.concatenate(
            [
                _measure(models, reward_fn, responses.rows(rows), temperature, allowed_token_ids)
                for rows in _chunks(len(responses), chunk_size)
            ]
        )
