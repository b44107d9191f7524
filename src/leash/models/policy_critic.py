"""The networks the online loop trains, behind one interface for both memory modes: policy,
reference and (for GAE) critic.

A :class:`PolicyCritic` answers three questions about a batch of (left-padded prompt,
right-padded response) pairs: the policy's per-token log-probs (with logits, for the entropy),
the reference's per-token log-probs, and the critic's value before each response token. The PPO
loop talks only to this interface; :func:`build_policy_critic` picks the implementation from
``algo.memory_mode``:

- ``separate`` (:class:`SeparatePolicyCritic`): a trainable policy LM, a frozen reference copy
  and a critic that is a sequence-classification model (backbone + ``score`` head, read at every
  position by :func:`leash.models.heads.sequence_values`), initialised from the reward model or
  the SFT policy.
- ``shared_lora`` (:class:`SharedLoraPolicyCritic`): one frozen base LM inside a ``PeftModel``
  with two LoRA adapters, ``policy`` and ``critic``, plus a scalar value head on the critic's
  last hidden state. The reference is the same base with the adapters disabled
  (:class:`leash.models.reference.DisabledAdapter`), so only one copy of the base weights sits
  in memory. Each switch is one context manager.

Critic-free estimators (RLOO, GRPO, REINFORCE: ``leash.config.needs_critic`` is False) get the
same two modes without the critic: :class:`SeparatePolicy` (policy and frozen reference, no
critic model) and :class:`SharedLoraPolicy` (one base with a ``policy`` adapter only, no critic
adapter and no value head). They have no :meth:`PolicyCritic.values` and an empty critic
parameter group.

Value alignment: the value of the state before response token t is read from the hidden state
at position ``P + t - 1``, the position whose logits predict token t (as the log-probs are).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from leash.config import (
    CriticInit,
    MemoryMode,
    ModelConfig,
    PeftConfig,
    PPOConfig,
    needs_critic,
)
from leash.models.factory import freeze, load_causal_lm, load_scalar_model
from leash.models.heads import last_hidden, sequence_values
from leash.models.logprobs import PolicyOutput, tempered_logps
from leash.models.reference import DisabledAdapter, FrozenCopy, Reference

POLICY_ADAPTER = "policy"
"""Name of the policy's LoRA adapter in shared_lora mode (active outside any switch)."""
CRITIC_ADAPTER = "critic"
"""Name of the critic's LoRA adapter in shared_lora mode."""


def response_slice(per_position: torch.Tensor, prompt_width: int) -> torch.Tensor:
    """Values of the states before each response token: positions ``P - 1 .. P + T - 2``.

    Args:
        per_position: (B, P + T) values at every position of prompt + response.
        prompt_width: P.
    Returns:
        (B, T) values aligned with the response tokens.
    """
    return per_position[:, prompt_width - 1 : -1]


class PolicyCritic(torch.nn.Module, ABC):
    """What PPO needs from its networks, whatever the memory mode.

    Inputs of every method: ``prompt_ids``/``prompt_mask`` (B, P) left padded and
    ``response_ids``/``response_mask`` (B, T) right padded (EOS inside the mask).
    """

    policy: torch.nn.Module
    """The causal LM that samples rollouts (and that the evaluator samples)."""
    reference: Reference
    """π_ref: a frozen copy, or the policy with its adapters disabled."""
    has_critic: bool = True
    """Whether there is a critic (:meth:`values`); False for the critic-free estimators."""

    def policy_logps(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
        allowed_token_ids: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> PolicyOutput:
        """Policy log-probs (B, T) and logits (B, T, V) of the responses (with gradients)."""
        return tempered_logps(
            self.policy, prompt_ids, prompt_mask, response_ids, response_mask,
            allowed_token_ids, temperature,
        )

    @torch.no_grad()
    def reference_logps(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
        allowed_token_ids: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Reference log-probs (B, T) of the responses, 0 on padding (never any gradient)."""
        with self.reference.scope() as reference:
            return tempered_logps(
                reference, prompt_ids, prompt_mask, response_ids, response_mask,
                allowed_token_ids, temperature,
            ).logps

    def values(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Critic values (B, T) before each response token, 0 on padding (with gradients).

        Raises:
            RuntimeError: without a critic (``has_critic`` False).
        """
        raise RuntimeError(
            f"{type(self).__name__} holds no critic: the critic-free estimators have no values"
        )

    @abstractmethod
    def parameter_groups(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """Trainable parameters of the policy and of the critic (disjoint; the critic's list is
        empty without a critic)."""

    @property
    @abstractmethod
    def roles(self) -> dict[str, torch.nn.Module]:
        """The networks held, by role, each counted once (read by the resource metrics)."""


class SeparatePolicy(PolicyCritic):
    """A critic-free estimator's two local networks: policy LM and frozen reference LM.

    Args:
        policy: trainable causal LM (plain or LoRA-wrapped).
        reference: causal LM; frozen here (eval mode, no gradients).
    """

    has_critic = False

    def __init__(self, policy: torch.nn.Module, reference: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.reference = FrozenCopy(reference)

    def parameter_groups(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """Trainable parameters of the policy LM; no critic parameters."""
        return _trainable(self.policy), []

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """policy and reference: two separate networks."""
        return {"policy": self.policy, **self.reference.roles}


class SeparatePolicyCritic(SeparatePolicy):
    """Four-model PPO's three local networks: policy LM, frozen reference LM, scalar critic.

    Args:
        policy: trainable causal LM (plain or LoRA-wrapped).
        reference: causal LM; frozen here (eval mode, no gradients).
        critic: trainable ``AutoModelForSequenceClassification`` with one label (plain or
            LoRA-wrapped; PEFT keeps its ``score`` head trainable).
    """

    has_critic = True

    def __init__(
        self, policy: torch.nn.Module, reference: torch.nn.Module, critic: torch.nn.Module
    ) -> None:
        super().__init__(policy, reference)
        self.critic = critic

    def values(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Critic values (B, T) before each response token, 0 on padding."""
        per_position = sequence_values(
            self.critic,
            torch.cat([prompt_ids, response_ids], dim=1),
            torch.cat([prompt_mask, response_mask], dim=1),
        )
        return response_slice(per_position, prompt_ids.shape[1]) * response_mask

    def parameter_groups(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """Trainable parameters of the policy LM and of the critic model."""
        return _trainable(self.policy), _trainable(self.critic)

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """policy, reference and critic: three separate networks."""
        return {**super().roles, "critic": self.critic}


class SharedLoraPolicy(PolicyCritic):
    """A critic-free estimator's one frozen base LM with a ``policy`` LoRA adapter only.

    ``policy`` is the ``PeftModel`` itself (its ``policy`` adapter active outside a switch); the
    reference is the same base with the adapter disabled (``reference.scope()``), restored as
    active and trainable when the block ends.

    Args:
        model: a ``PeftModel`` (causal LM) holding an adapter named ``policy``.
    """

    has_critic = False
    adapters: tuple[str, ...] = (POLICY_ADAPTER,)
    """The LoRA adapters the model must hold, all kept trainable."""

    def __init__(self, model: PeftModel) -> None:
        super().__init__()
        missing = set(self.adapters) - set(model.peft_config)
        if missing:
            raise ValueError(f"shared_lora needs LoRA adapters named {sorted(missing)}")
        self.policy = model
        self.reference = DisabledAdapter(model, restore=self._restore_policy)
        self._restore_policy()

    def _restore_policy(self) -> None:
        self.policy.set_adapter(POLICY_ADAPTER)
        self.policy.set_requires_grad(list(self.adapters), True)

    def parameter_groups(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """Policy adapter weights; no critic parameters."""
        policy = []
        for name, param in self.policy.named_parameters():
            if param.requires_grad and f".{POLICY_ADAPTER}." not in name:
                raise ValueError(f"trainable parameter {name} is not the policy adapter's")
            if param.requires_grad:
                policy.append(param)
        return policy, []

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """``policy``: the one base with its adapter (reference = adapter off, no extra weights)."""
        return {"policy": self.policy}


class SharedLoraPolicyCritic(SharedLoraPolicy):
    """One frozen base LM with a ``policy`` and a ``critic`` LoRA adapter and a value head.

    ``policy`` is the ``PeftModel`` itself: outside a switch its ``policy`` adapter is active,
    so sampling it (here or in the evaluator) samples the policy. Switches:
    :meth:`adapter` (``critic`` for the values) and ``reference.scope()`` (adapters disabled).
    PEFT turns ``requires_grad`` off for inactive adapters when switching; every switch restores
    both adapters as trainable, so the optimizer's parameters never change status.

    Args:
        model: a ``PeftModel`` (causal LM) holding adapters named ``policy`` and ``critic``.
        value_head: maps the critic's last hidden state (H) to a scalar; trained with it.
    """

    has_critic = True
    adapters = (POLICY_ADAPTER, CRITIC_ADAPTER)

    def __init__(self, model: PeftModel, value_head: torch.nn.Linear) -> None:
        super().__init__(model)
        self.value_head = value_head

    @contextmanager
    def adapter(self, name: str) -> Iterator[PeftModel]:
        """Run the block with LoRA adapter ``name`` active; the policy adapter is active after."""
        try:
            self.policy.set_adapter(name)
            yield self.policy
        finally:
            self._restore_policy()

    def values(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Value head on the critic adapter's last hidden states (B, T), 0 on padding."""
        input_ids = torch.cat([prompt_ids, response_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
        with self.adapter(CRITIC_ADAPTER) as model:
            lm = model.get_base_model()
            hidden = last_hidden(getattr(lm, lm.base_model_prefix), input_ids, attention_mask)
        per_position = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return response_slice(per_position.float(), prompt_ids.shape[1]) * response_mask

    def parameter_groups(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """Policy adapter weights; critic adapter weights plus the value head."""
        policy, critic = [], list(self.value_head.parameters())
        for name, param in self.policy.named_parameters():
            if not param.requires_grad:
                continue
            if f".{POLICY_ADAPTER}." in name:
                policy.append(param)
            elif f".{CRITIC_ADAPTER}." in name:
                critic.append(param)
            else:
                raise ValueError(f"trainable parameter {name} belongs to neither adapter")
        return policy, critic

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """``policy``: the one base with both adapters (reference = adapters off, no extra
        weights); ``critic``: the value head alone (its adapter is counted under policy)."""
        return {"policy": self.policy, "critic": self.value_head}


def _trainable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [param for param in module.parameters() if param.requires_grad]


def lora_config(peft: PeftConfig) -> LoraConfig:
    """The causal-LM LoRA configuration of both shared_lora adapters."""
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=peft.r,
        lora_alpha=peft.alpha,
        lora_dropout=peft.dropout,
        target_modules=peft.target_modules,
    )


def shared_lora_policy(base: PreTrainedModel, peft: PeftConfig) -> SharedLoraPolicy:
    """Freeze ``base`` and give it a ``policy`` LoRA adapter only (no critic, no value head).

    LoRA's B matrices start at zero, so the policy equals the reference at step 0.
    """
    freeze(base)
    return SharedLoraPolicy(get_peft_model(base, lora_config(peft), adapter_name=POLICY_ADAPTER))


def shared_lora_policy_critic(base: PreTrainedModel, peft: PeftConfig) -> SharedLoraPolicyCritic:
    """Freeze ``base`` and give it a ``policy`` and a ``critic`` LoRA adapter and a value head.

    LoRA's B matrices start at zero, so both adapters start as the base (the SFT policy): the
    policy equals the reference at step 0. The value head is initialised like a Hugging Face
    ``score`` head (normal, std ``initializer_range``, no bias).
    """
    freeze(base)
    model = get_peft_model(base, lora_config(peft), adapter_name=POLICY_ADAPTER)
    model.add_adapter(CRITIC_ADAPTER, lora_config(peft))
    hidden_size = base.config.hidden_size
    value_head = torch.nn.Linear(hidden_size, 1, bias=False)
    torch.nn.init.normal_(value_head.weight, std=getattr(base.config, "initializer_range", 0.02))
    return SharedLoraPolicyCritic(model, value_head)


def build_policy(
    algo: PPOConfig, model_cfg: ModelConfig, peft: PeftConfig, tokenizer, sft_path: str
) -> PolicyCritic:
    """A critic-free estimator's networks for ``algo.memory_mode``: no critic is loaded.

    - ``separate``: policy (LoRA-wrapped when ``peft.enabled``) and reference from ``sft_path``.
    - ``shared_lora``: one frozen SFT base with a ``policy`` LoRA adapter of shape ``peft``.
    """
    if MemoryMode(algo.memory_mode) == MemoryMode.shared_lora:
        base = load_causal_lm(sft_path, model_cfg, tokenizer, trainable=False)
        return shared_lora_policy(base, peft)
    return SeparatePolicy(
        load_causal_lm(sft_path, model_cfg, tokenizer, trainable=True, peft=peft),
        load_causal_lm(sft_path, model_cfg, tokenizer, trainable=False),
    )


def build_policy_critic(
    algo: PPOConfig,
    model_cfg: ModelConfig,
    peft: PeftConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    sft_path: str,
    reward_model_path: str | None,
) -> PolicyCritic:
    """Load the online loop's policy, reference and, for GAE, critic for ``algo.memory_mode``.

    A critic-free estimator (``needs_critic(algo)`` False) gets :func:`build_policy`: no
    critic, and ``critic_init`` is not read. With a critic:

    - ``separate``: policy and reference from ``sft_path`` (the policy LoRA-wrapped when
      ``peft.enabled``), critic from the reward model (``critic_init=reward``) or from the SFT
      weights with a fresh scalar head (``critic_init=policy``).
    - ``shared_lora``: one frozen SFT base with LoRA adapters of shape ``peft`` (r, alpha,
      dropout, targets; ``peft.enabled`` is implied). The critic starts from the SFT base, so
      it needs ``critic_init=policy``.

    Raises:
        ValueError: ``critic_init=reward`` without a reward model (e.g. PPO-GT), or with
            ``shared_lora``.
    """
    if not needs_critic(algo):
        return build_policy(algo, model_cfg, peft, tokenizer, sft_path)
    mode, init = MemoryMode(algo.memory_mode), CriticInit(algo.critic_init)
    if mode == MemoryMode.shared_lora:
        if init == CriticInit.reward:
            raise ValueError(
                "algo.critic_init=reward needs algo.memory_mode=separate: in shared_lora the "
                "critic is a LoRA adapter on the SFT base; set algo.critic_init=policy"
            )
        base = load_causal_lm(sft_path, model_cfg, tokenizer, trainable=False)
        return shared_lora_policy_critic(base, peft)
    if init == CriticInit.reward and reward_model_path is None:
        raise ValueError(
            "algo.critic_init=reward needs a reward model (algo.reward_model_path); with the "
            "gold reward (PPO-GT) set algo.critic_init=policy"
        )
    critic_path = reward_model_path if init == CriticInit.reward else sft_path
    return SeparatePolicyCritic(
        load_causal_lm(sft_path, model_cfg, tokenizer, trainable=True, peft=peft),
        load_causal_lm(sft_path, model_cfg, tokenizer, trainable=False),
        load_scalar_model(str(critic_path), model_cfg, tokenizer, trainable=True, peft=peft),
    )
