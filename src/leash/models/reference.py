"""The reference policy π_ref, one abstraction for DPO training, PPO and the evaluator.

A :class:`Reference` answers one question: *which network is π_ref for this block?*
(``with reference.scope() as network:``). How it is held is the implementation's business:

- :class:`FrozenCopy`: a separate frozen network in memory (``algo.reference=copy``, PPO's
  ``separate`` memory mode);
- :class:`DisabledAdapter`: the policy itself with its LoRA adapters switched off, no second
  copy of the weights (``algo.reference=adapter``, PPO's ``shared_lora``);
- :class:`OnDemand`: loaded for the block and dropped after it, nothing resident (what the
  evaluator uses when training needs no live reference: SimPO, precomputed log-probs);
- :class:`Precomputed`: DPO reads the reference log-probs that travel with each batch, and
  the evaluator loads the network on demand.

:func:`build_reference` is the one place where a configuration picks the implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
from peft import PeftModel

from leash.config import ReferenceMode
from leash.models.factory import freeze

Loader = Callable[[], torch.nn.Module]
"""Loads a fresh frozen copy of the reference network."""


class Reference(torch.nn.Module, ABC):
    """π_ref, however it is held (an ``nn.Module`` so that a resident copy moves with its owner).

    ``precomputed`` says that the reference log-probs of training batches travel with the
    batch, so DPO never runs the network while it trains.
    """

    precomputed: bool = False

    @abstractmethod
    def scope(self) -> AbstractContextManager[torch.nn.Module]:
        """``with reference.scope() as network:`` the reference network for the block."""

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """Networks this reference keeps in memory, by role (read by the resource metrics)."""
        return {}


class FrozenCopy(Reference):
    """A separate frozen copy of the initial policy (eval mode, no gradients, ever)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = freeze(model)

    def scope(self) -> AbstractContextManager[torch.nn.Module]:
        """The frozen copy itself."""
        return nullcontext(self.model)

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """The copy, under ``reference``."""
        return {"reference": self.model}

    def train(self, mode: bool = True) -> FrozenCopy:
        """Stay in eval mode whatever the owner's mode is."""
        return super().train(False)

    @torch.no_grad()
    def follow(self, policy: torch.nn.Module) -> None:
        """Copy the weights of ``policy`` (the same plain architecture, no adapters) into the
        copy, which stays frozen: iterative DPO's ``reference_update=last_round``."""
        self.model.load_state_dict(policy.state_dict())


class DisabledAdapter(Reference):
    """The policy's own base network with its LoRA adapters disabled.

    Args:
        policy: a PEFT model; it belongs to the module that trains it, so it is held in a tuple
            that ``nn.Module`` does not register a second time.
        restore: called when the block ends (e.g. re-activate the policy adapter and keep every
            adapter trainable: PEFT switches ``requires_grad`` off for inactive adapters).
    """

    def __init__(self, policy: PeftModel, restore: Callable[[], None] | None = None) -> None:
        super().__init__()
        if not isinstance(policy, PeftModel):
            raise ValueError("algo.reference=adapter needs a PEFT (LoRA) policy; set peft=lora")
        self._policy = (policy,)
        self._restore = restore

    @contextmanager
    def scope(self) -> Iterator[torch.nn.Module]:
        """The policy with every adapter disabled (restored when the block ends)."""
        (policy,) = self._policy
        try:
            with policy.disable_adapter():
                yield policy
        finally:
            if self._restore is not None:
                self._restore()


class OnDemand(Reference):
    """A reference that is not kept in memory: loaded for each block, dropped after it."""

    def __init__(self, load: Loader) -> None:
        super().__init__()
        self._load = load

    @contextmanager
    def scope(self) -> Iterator[torch.nn.Module]:
        """A freshly loaded frozen copy, released when the block ends."""
        yield self._load()


class Precomputed(OnDemand):
    """Training batches carry the reference log-probs; evaluation loads the network on demand."""

    precomputed = True


def build_reference(
    mode: ReferenceMode | str,
    *,
    load: Loader,
    policy: torch.nn.Module | None = None,
    used_in_training: bool = True,
) -> Reference:
    """The reference that ``mode`` names.

    Args:
        mode: ``copy``, ``adapter`` or ``precomputed``.
        load: loads the reference network (the SFT policy), for every mode that holds or loads
            one.
        policy: the policy being trained (``adapter`` disables its adapters).
        used_in_training: False for reference-free losses (SimPO): the network is then only
            loaded on demand, for the evaluator's KL.
    Raises:
        ValueError: ``adapter`` with a policy that is not a PEFT model.
    """
    mode = ReferenceMode(mode)
    if not used_in_training:
        return OnDemand(load)
    if mode == ReferenceMode.copy:
        return FrozenCopy(load())
    if mode == ReferenceMode.adapter:
        return DisabledAdapter(policy)
    return Precomputed(load)
