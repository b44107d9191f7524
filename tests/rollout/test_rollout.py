"""Rollouts and the policy/critic interface: shapes, masks, alignment, adapter switching.

A tiny GPT-2 is written once with ``write_tiny_checkpoint`` on the synthetic task's tokenizer
and loaded back for every role; prompts are the task's train prompts, left padded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from leash.config import (
    AdvantageEstimator,
    CriticInit,
    MemoryMode,
    ModelConfig,
    PeftConfig,
    PPOConfig,
    RewardSource,
    TaskConfig,
    TinyModelConfig,
)
from leash.data.tasks.synthetic import SyntheticTask
from leash.models.factory import load_causal_lm, load_scalar_model
from leash.models.heads import score_sequences
from leash.models.policy_critic import (
    CRITIC_ADAPTER,
    POLICY_ADAPTER,
    SeparatePolicy,
    SharedLoraPolicy,
    SharedLoraPolicyCritic,
    build_policy_critic,
    shared_lora_policy_critic,
)
from leash.models.tiny import write_tiny_checkpoint
from leash.rollout.rewards import GoldTaskReward, LearnedReward, build_reward_fn
from leash.rollout.rollout import Responses, Rollout, sample, score_rollout
from leash.sequences import left_pad

SAMPLES = 2


@pytest.fixture(scope="module")
def task() -> SyntheticTask:
    return SyntheticTask.from_config(TaskConfig(num_prompts=16))


@pytest.fixture(scope="module")
def checkpoint(task: SyntheticTask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tiny = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2)
    return write_tiny_checkpoint(tiny, task.tokenizer(), tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="module")
def prompts(task: SyntheticTask) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer = task.tokenizer()
    return left_pad([tokenizer(p)["input_ids"] for p in task.train_prompts], tokenizer.pad_token_id)


def separate(task: SyntheticTask, checkpoint: Path, critic_init: CriticInit = CriticInit.policy):
    algo = PPOConfig(critic_init=critic_init)
    return build_policy_critic(
        algo, ModelConfig(), PeftConfig(), task.tokenizer(),
        sft_path=str(checkpoint), reward_model_path=str(checkpoint),
    )


def shared(task: SyntheticTask, checkpoint: Path) -> SharedLoraPolicyCritic:
    base = load_causal_lm(str(checkpoint), ModelConfig(), task.tokenizer(), trainable=False)
    return shared_lora_policy_critic(base, PeftConfig(r=4))


def draw(task: SyntheticTask, policy: torch.nn.Module, prompts, seed: int = 0) -> Responses:
    tokenizer = task.tokenizer()
    return sample(
        policy,
        *prompts,
        samples_per_prompt=SAMPLES,
        max_new_tokens=task.config.max_response_length,
        temperature=1.0,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        allowed_token_ids=task.allowed_token_ids(),
        generator=torch.Generator().manual_seed(seed),
    )


def test_sample_repeats_prompts_and_masks_responses_up_to_eos(task, checkpoint, prompts):
    models = separate(task, checkpoint)
    responses = draw(task, models.policy, prompts)
    eos, pad = task.tokenizer().eos_token_id, task.tokenizer().pad_token_id
    n, width = prompts[0].shape
    assert responses.prompt_ids.shape == (SAMPLES * n, width)
    assert torch.equal(responses.prompt_ids[::SAMPLES], prompts[0])
    assert torch.equal(responses.prompt_ids[1::SAMPLES], prompts[0])
    ids, mask = responses.response_ids, responses.response_mask
    assert ids.shape == mask.shape and ids.shape[1] <= task.config.max_response_length
    lengths = mask.sum(1)
    assert torch.equal(mask, (torch.arange(ids.shape[1]) < lengths[:, None]).long())  # right pad
    assert bool(responses.eos_found.any()) and not bool(responses.eos_found.all())
    for row in range(len(responses)):
        real = ids[row, : lengths[row]].tolist()
        assert (eos in real) == bool(responses.eos_found[row])
        if responses.eos_found[row]:
            assert real.index(eos) == len(real) - 1  # EOS is the last real token, inside the mask
        assert ids[row, lengths[row] :].eq(pad).all()
        assert set(real) <= set(task.allowed_token_ids().tolist())


def test_rollout_is_zero_on_padding_and_starts_at_the_reference(task, checkpoint, prompts):
    models = separate(task, checkpoint).train()
    responses = draw(task, models.policy, prompts)
    rollout = score_rollout(
        models, GoldTaskReward(task), responses, chunk_size=8,
        allowed_token_ids=task.allowed_token_ids(),
    )
    pad = responses.response_mask == 0
    assert pad.any()
    for tensor in (rollout.logprobs, rollout.ref_logprobs, rollout.values, rollout.entropy):
        assert tensor.shape == responses.response_ids.shape
        assert tensor[pad].eq(0).all() and tensor.isfinite().all()
    real = ~pad
    assert (rollout.logprobs[real] < 0).all() and (rollout.entropy[real] > 0).all()
    # The restricted policy has |allowed| choices: its entropy is at most log |allowed|.
    assert (rollout.entropy <= torch.log(torch.tensor(len(task.allowed_token_ids()))) + 1e-5).all()
    assert torch.equal(rollout.logprobs, rollout.ref_logprobs)  # policy == reference at step 0
    gold = task.gold_reward_ids(responses.prompt_ids, responses.response_ids)
    assert torch.equal(rollout.scores, gold)
    assert models.policy.training and not models.reference.training  # modes restored
    one_chunk = score_rollout(
        models, GoldTaskReward(task), responses, chunk_size=len(responses),
        allowed_token_ids=task.allowed_token_ids(),
    )
    torch.testing.assert_close(one_chunk.logprobs, rollout.logprobs)
    torch.testing.assert_close(one_chunk.values, rollout.values)


def test_value_before_token_t_is_the_critic_score_of_the_prefix(task, checkpoint, prompts):
    models = separate(task, checkpoint, CriticInit.reward)
    responses = draw(task, models.policy, prompts)
    values = models.values(*responses.model_inputs()).detach()
    ids, mask = responses.response_ids, responses.response_mask
    for t in range(ids.shape[1]):
        prefix_ids = torch.cat([responses.prompt_ids, ids[:, :t]], dim=1)
        prefix_mask = torch.cat([responses.prompt_mask, mask[:, :t]], dim=1)
        expected = score_sequences(models.critic, prefix_ids, prefix_mask).detach()
        real = mask[:, t] > 0
        torch.testing.assert_close(values[real, t], expected[real], atol=1e-5, rtol=1e-5)


def test_learned_reward_scores_prompt_plus_response_at_its_last_token(task, checkpoint, prompts):
    rm = load_scalar_model(str(checkpoint), ModelConfig(), task.tokenizer(), trainable=False)
    reward = LearnedReward(rm)
    reward.train()
    assert not rm.training and not any(p.requires_grad for p in rm.parameters())
    responses = draw(task, load_causal_lm(str(checkpoint), ModelConfig(), task.tokenizer(),
                                          trainable=False), prompts)
    scores = reward(*responses.model_inputs())
    row = int(responses.eos_found.int().argmax())  # a response that ended with EOS
    length = int(responses.response_mask[row].sum())
    alone = torch.cat(
        [responses.prompt_ids[row][responses.prompt_mask[row] > 0],
         responses.response_ids[row, :length]]
    )[None]
    expected = score_sequences(rm, alone, torch.ones_like(alone))
    torch.testing.assert_close(scores[row : row + 1], expected)


def test_rows_and_concatenate_round_trip(task, checkpoint, prompts):
    models = separate(task, checkpoint)
    responses = draw(task, models.policy, prompts)
    rollout = score_rollout(models, GoldTaskReward(task), responses, chunk_size=4)
    index = torch.tensor([3, 0, 5])
    picked = rollout.rows(index)
    assert isinstance(picked, Rollout) and len(picked) == 3
    assert torch.equal(picked.values, rollout.values[index])
    again = Rollout.concatenate([rollout.rows(slice(0, 5)), rollout.rows(slice(5, None))])
    assert all(torch.equal(getattr(again, f), getattr(rollout, f)) for f in vars(rollout))


def test_shared_lora_switches_adapters_and_keeps_both_trainable(task, checkpoint, prompts):
    models = shared(task, checkpoint)
    model = models.policy
    responses = draw(task, model, prompts)
    inputs = responses.model_inputs()
    allowed = task.allowed_token_ids()

    def trainable() -> set[str]:
        return {name for name, p in model.named_parameters() if p.requires_grad}

    adapters = trainable()
    assert any(f".{POLICY_ADAPTER}." in n for n in adapters)
    assert any(f".{CRITIC_ADAPTER}." in n for n in adapters)
    policy_logps = models.policy_logps(*inputs, allowed).logps.detach()
    torch.testing.assert_close(policy_logps, models.reference_logps(*inputs, allowed))
    values = models.values(*inputs).detach()
    assert model.active_adapter == POLICY_ADAPTER and trainable() == adapters
    with torch.no_grad():  # move the policy adapter only
        for name, param in model.named_parameters():
            if f"lora_B.{POLICY_ADAPTER}" in name:
                param.normal_(std=0.5)
    moved = models.policy_logps(*inputs, allowed).logps.detach()
    assert not torch.allclose(moved, policy_logps)
    torch.testing.assert_close(models.reference_logps(*inputs, allowed), policy_logps)
    torch.testing.assert_close(models.values(*inputs).detach(), values)  # critic untouched
    assert model.active_adapter == POLICY_ADAPTER and trainable() == adapters
    policy_params, critic_params = models.parameter_groups()
    assert {id(p) for p in policy_params}.isdisjoint(id(p) for p in critic_params)
    assert len(policy_params) + len(critic_params) == len(adapters) + 1  # + value head


def test_factory_rejects_a_critic_without_a_reward_model(task, checkpoint):
    with pytest.raises(ValueError, match="critic_init=policy"):
        build_policy_critic(
            PPOConfig(memory_mode=MemoryMode.shared_lora, critic_init=CriticInit.reward),
            ModelConfig(), PeftConfig(), task.tokenizer(),
            sft_path=str(checkpoint), reward_model_path=str(checkpoint),
        )
    with pytest.raises(ValueError, match="reward_model_path"):
        build_policy_critic(
            PPOConfig(critic_init=CriticInit.reward), ModelConfig(), PeftConfig(),
            task.tokenizer(), sft_path=str(checkpoint), reward_model_path=None,
        )


def test_reward_source_picks_the_gold_reward_or_a_frozen_reward_model(task, checkpoint):
    tokenizer, path = task.tokenizer(), str(checkpoint)
    gold = PPOConfig(reward=RewardSource.gold)
    learned = PPOConfig(reward=RewardSource.learned)
    built = build_reward_fn(gold, ModelConfig(), tokenizer, task=task, reward_model_path=None)
    assert isinstance(built, GoldTaskReward)
    built = build_reward_fn(learned, ModelConfig(), tokenizer, task=None, reward_model_path=path)
    assert isinstance(built, LearnedReward) and not built.model.training
    with pytest.raises(ValueError, match="gold"):
        build_reward_fn(gold, ModelConfig(), tokenizer, task=None, reward_model_path=path)
    with pytest.raises(ValueError, match="learned"):
        build_reward_fn(learned, ModelConfig(), tokenizer, task=task, reward_model_path=None)


def test_tempered_logps_are_those_of_the_sampled_distribution(task, checkpoint, prompts):
    models = separate(task, checkpoint)
    responses = draw(task, models.policy, prompts)
    inputs, allowed = responses.model_inputs(), task.allowed_token_ids()
    plain = models.policy_logps(*inputs, allowed).logps.detach()
    hot = models.policy_logps(*inputs, allowed, temperature=2.0)
    # First response token: predicted from the prompt's last position alone.
    logits = models.policy(input_ids=responses.prompt_ids, attention_mask=responses.prompt_mask,
                           position_ids=(responses.prompt_mask.cumsum(-1) - 1).clamp(min=0)).logits
    restricted = torch.full_like(logits[:, -1], float("-inf"))
    restricted[:, allowed] = logits[:, -1, allowed]
    first = responses.response_ids[:, :1]
    for temperature, logps in ((1.0, plain), (2.0, hot.logps.detach())):
        expected = torch.log_softmax(restricted / temperature, -1).gather(1, first).squeeze(1)
        torch.testing.assert_close(logps[:, 0], expected.detach(), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain, hot.logps.detach())


@pytest.mark.parametrize("mode", [MemoryMode.separate, MemoryMode.shared_lora])
@pytest.mark.parametrize(
    "advantage",
    [AdvantageEstimator.rloo, AdvantageEstimator.grpo, AdvantageEstimator.reinforce],
)
def test_critic_free_estimators_load_no_critic(task, checkpoint, prompts, mode, advantage):
    # critic_init=reward without a reward model would fail for GAE: a critic-free build never
    # reads it, so nothing is loaded from the (absent) reward model.
    algo = PPOConfig(advantage=advantage, memory_mode=mode, critic_init=CriticInit.reward)
    models = build_policy_critic(
        algo, ModelConfig(), PeftConfig(r=4), task.tokenizer(),
        sft_path=str(checkpoint), reward_model_path=None,
    )
    expected = SeparatePolicy if mode == MemoryMode.separate else SharedLoraPolicy
    assert type(models) is expected and not models.has_critic
    assert "critic" not in models.roles
    assert set(models.roles) == ({"policy", "reference"} if mode == MemoryMode.separate
                                 else {"policy"})
    policy_params, critic_params = models.parameter_groups()
    assert policy_params and critic_params == []
    if mode == MemoryMode.shared_lora:
        assert set(models.policy.peft_config) == {POLICY_ADAPTER}
    responses = draw(task, models.policy, prompts)
    with pytest.raises(RuntimeError, match="no critic"):
        models.values(*responses.model_inputs())
    rollout = score_rollout(
        models, GoldTaskReward(task), responses, chunk_size=8,
        allowed_token_ids=task.allowed_token_ids(),
    )
    assert rollout.values is None
    assert torch.equal(rollout.logprobs, rollout.ref_logprobs)  # policy == reference at step 0
    picked = rollout.rows(torch.tensor([2, 0]))
    assert picked.values is None and picked.logprobs.shape[0] == 2
