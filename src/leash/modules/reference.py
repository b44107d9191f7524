"""Reference policies of the DPO family: where ``log pi_ref`` of a preference batch comes from.

Strategies (``algo.reference``), each a callable ``(batch, pairs) -> PairLogps | None``:

- ``copy``: a frozen copy of the initial policy, run under ``no_grad`` on the same concatenated
  chosen + rejected forward as the policy;
- ``adapter``: the policy is a PEFT (LoRA) model and the reference is the same network with the
  adapter disabled, so no second model sits in memory;
- ``precomputed``: the log-probs were computed once by :func:`precompute_reference_logps` and
  travel with the batch (no reference model in memory while training);
- SimPO is reference-free: :class:`NoReference` returns None.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

import torch
from peft import PeftModel

from leash.config import DPOLoss, ReferenceMode
from leash.data.types import PreferenceBatch
from leash.losses.logprobs import response_logps
from leash.rollout.generation import restrict_logits


class PairInputs(NamedTuple):
    """Chosen rows then rejected rows of a preference batch, for one (2B, T) forward."""

    input_ids: torch.Tensor
    """(2B, T)"""
    attention_mask: torch.Tensor
    """(2B, T)"""
    labels: torch.Tensor
    """(2B, T) response tokens, IGNORE_INDEX on prompt and padding."""


class PairLogps(NamedTuple):
    """Summed response log-probs of the chosen and rejected responses of each pair."""

    chosen: torch.Tensor
    """(B,) float32"""
    rejected: torch.Tensor
    """(B,) float32"""


def concatenate_pairs(batch: PreferenceBatch) -> PairInputs:
    """Stack chosen over rejected so that one forward pass scores both (they share T)."""
    return PairInputs(
        torch.cat([batch.chosen_input_ids, batch.rejected_input_ids]),
        torch.cat([batch.chosen_attention_mask, batch.rejected_attention_mask]),
        torch.cat([batch.chosen_labels, batch.rejected_labels]),
    )


def pair_logps(
    model: torch.nn.Module, pairs: PairInputs, allowed_token_ids: torch.Tensor | None = None
) -> tuple[PairLogps, PairLogps]:
    """Summed response log-probs and response token counts of every pair, from one forward.

    Args:
        model: a causal LM (plain or PEFT-wrapped) returning ``.logits`` (2B, T, V).
        pairs: the concatenated (2B, T) chosen + rejected inputs.
        allowed_token_ids: (A,) restrict the policy to these tokens (a built-in task's support,
            as its sampler and oracle do); None scores over the whole vocabulary.
    Returns:
        log-probs ``(chosen (B,), rejected (B,))`` and token counts in the same layout.
    """
    logits = model(
        input_ids=pairs.input_ids, attention_mask=pairs.attention_mask, use_cache=False
    ).logits
    summed, counts = response_logps(restrict_logits(logits, allowed_token_ids), pairs.labels)
    return PairLogps(*summed.chunk(2)), PairLogps(*counts.chunk(2))


class ReferenceLogpsFn(Protocol):
    """A reference strategy: the reference log-probs of a batch, or None (reference-free)."""

    def __call__(self, batch: PreferenceBatch, pairs: PairInputs) -> PairLogps | None: ...


class FrozenCopy:
    """``copy``: a separate frozen network, run without gradients on the policy's inputs."""

    def __init__(self, model: torch.nn.Module, allowed_token_ids: torch.Tensor | None) -> None:
        self.model = model
        self.allowed_token_ids = allowed_token_ids

    def __call__(self, batch: PreferenceBatch, pairs: PairInputs) -> PairLogps:
        """Reference log-probs (B,) x 2 from the frozen copy."""
        with torch.no_grad():
            return pair_logps(self.model, pairs, self.allowed_token_ids)[0]


class DisabledAdapter:
    """``adapter``: the policy's own base network, its LoRA adapter switched off."""

    def __init__(self, policy: PeftModel, allowed_token_ids: torch.Tensor | None) -> None:
        self.policy = policy
        self.allowed_token_ids = allowed_token_ids

    def __call__(self, batch: PreferenceBatch, pairs: PairInputs) -> PairLogps:
        """Reference log-probs (B,) x 2 from the policy with its adapter disabled."""
        with torch.no_grad(), self.policy.disable_adapter():
            return pair_logps(self.policy, pairs, self.allowed_token_ids)[0]


class Precomputed:
    """``precomputed``: log-probs carried by the batch (``reference_*_logps``)."""

    def __call__(self, batch: PreferenceBatch, pairs: PairInputs) -> PairLogps:
        """The batch's reference log-probs (B,) x 2; raise if any is missing."""
        chosen, rejected = batch.reference_chosen_logps, batch.reference_rejected_logps
        if chosen is None or rejected is None or chosen.isnan().any() or rejected.isnan().any():
            raise ValueError(
                "algo.reference=precomputed but the batch lacks reference_chosen_logps / "
                "reference_rejected_logps: compute them with precompute_reference_logps and "
                "attach them to every split that is trained or validated "
                "(PreferenceDataModule.attach_reference_logps)"
            )
        return PairLogps(chosen.float(), rejected.float())


class NoReference:
    """Reference-free losses (SimPO)."""

    def __call__(self, batch: PreferenceBatch, pairs: PairInputs) -> None:
        """Always None: the loss needs no reference log-probs."""
        return None


def build_reference(
    mode: ReferenceMode | str,
    loss: DPOLoss | str,
    policy: torch.nn.Module,
    reference: torch.nn.Module | None,
    allowed_token_ids: torch.Tensor | None = None,
) -> ReferenceLogpsFn:
    """The strategy for ``algo.reference``, checking that the models passed fit it.

    Raises:
        ValueError: a reference model missing for ``copy``, passed where none is used, or a
            policy that is not a PEFT model for ``adapter``.
    """
    mode, loss = ReferenceMode(mode), DPOLoss(loss)
    if loss == DPOLoss.simpo:
        if reference is not None:
            raise ValueError("algo.loss=simpo is reference-free: pass reference=None")
        return NoReference()
    if mode == ReferenceMode.copy:
        if reference is None:
            raise ValueError("algo.reference=copy needs a frozen reference model")
        return FrozenCopy(reference, allowed_token_ids)
    if reference is not None:
        raise ValueError(f"algo.reference={mode.value} holds no reference model: pass None")
    if mode == ReferenceMode.adapter:
        if not isinstance(policy, PeftModel):
            raise ValueError("algo.reference=adapter needs a PEFT (LoRA) policy; set peft=lora")
        return DisabledAdapter(policy, allowed_token_ids)
    return Precomputed()


def precompute_reference_logps(
    model: torch.nn.Module,
    dataloader: Iterable[PreferenceBatch],
    allowed_token_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed reference log-probs of every pair of a split, ordered by ``batch.index``.

    Runs once before training (eval mode, no gradients; the model's training mode is restored),
    so that the reference needs no memory while the policy trains. Single process: give it a
    loader over the whole split (any order; no sampler sharding, no ``drop_last``).

    Returns:
        chosen (N,) and rejected (N,) float32 on CPU, where row i holds the pair with index i.
    Raises:
        ValueError: the indices seen are not exactly 0..N-1, each once.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    indices, chosen, rejected = [], [], []
    try:
        with torch.no_grad():
            for batch in dataloader:
                batch = batch.to(device)
                logps, _ = pair_logps(model, concatenate_pairs(batch), allowed_token_ids)
                indices.append(batch.index.cpu())
                chosen.append(logps.chosen.cpu())
                rejected.append(logps.rejected.cpu())
    finally:
        model.train(was_training)
    index = torch.cat(indices)
    if not torch.equal(index.sort().values, torch.arange(len(index))):
        raise ValueError("precompute_reference_logps needs every row index 0..N-1 exactly once")
    order = index.argsort()
    return torch.cat(chosen)[order], torch.cat(rejected)[order]
