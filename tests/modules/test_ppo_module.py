"""PPOModule: step-0 identities, a PPO-GT run through lightning.Trainer, whitening, the KL
controller, memory modes, the critic-free estimators (no critic held, each estimator's pure
function, REINFORCE's checkpointed baseline), the non-finite guard and checkpoints, processes,
and (slow) learning.

Models are a tiny GPT-2 written with ``write_tiny_checkpoint`` on the synthetic task's tokenizer;
prompt batches are the task's train prompts, left padded (what the data module's ``prompts``
view yields).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import socket
from pathlib import Path

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from heldout import direct_implicit_rm, heldout_pair_loader
from helpers import quiet_trainer
from leash.config import (
    AdvantageEstimator,
    CriticInit,
    LossType,
    MemoryMode,
    ModelConfig,
    PeftConfig,
    PPOConfig,
    RewardSource,
    Scheduler,
    TaskConfig,
    TinyModelConfig,
    exact_div,
    optimizer_steps,
    updates_per_step,
)
from leash.data.tasks.synthetic import SyntheticTask
from leash.data.types import PromptBatch
from leash.losses.advantages import (
    grpo_advantages,
    per_token,
    reinforce_advantages,
    rloo_advantages,
    sequence_rewards,
)
from leash.losses.ppo import (
    ShapedRewards,
    gae,
    masked_mean,
    masked_var,
    masked_whiten,
    shape_rewards,
)
from leash.models.factory import load_causal_lm
from leash.models.policy_critic import build_policy_critic
from leash.models.tiny import write_tiny_checkpoint
from leash.modules.guard import NonFiniteError
from leash.modules.ppo import PPOModule, minibatch_size
from leash.modules.ppo_stats import rollout_metrics
from leash.rollout.advantages import advantages, shape, tokens_per_update
from leash.rollout.rewards import GoldTaskReward
from leash.rollout.rollout import Rollout
from leash.sequences import left_pad

LOGGED = [
    "objective/kl", "objective/kl_k3", "objective/entropy", "objective/scores",
    "objective/rlhf_reward", "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg",
    "loss/value_avg", "val/clipfrac_avg", "val/ratio", "val/num_eos_tokens", "kl_coef",
]
VALUE_METRICS = {"loss/value_avg", "val/clipfrac_avg"}
"""The critic's metrics, absent without a critic."""
TIMING = [
    "time/generation_s", "time/scoring_s", "time/update_s", "throughput/generation_tokens_per_s"
]


def identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@pytest.fixture(scope="module")
def task() -> SyntheticTask:
    return SyntheticTask.from_config(TaskConfig(num_prompts=16))


@pytest.fixture(scope="module")
def checkpoint(task: SyntheticTask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tiny = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2)
    return write_tiny_checkpoint(tiny, task.tokenizer(), tmp_path_factory.mktemp("tiny") / "base")


class PromptCollate:
    """(index, token ids) rows -> a left-padded PromptBatch."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[tuple[int, list[int]]]) -> PromptBatch:
        ids, mask = left_pad([tokens for _, tokens in rows], self.pad_id)
        return PromptBatch(ids, mask, torch.tensor([index for index, _ in rows]))


def prompt_loader(task: SyntheticTask, batch_size: int = 4, prompts: int | None = None):
    tokenizer = task.tokenizer()
    encoded = [tokenizer(p)["input_ids"] for p in task.train_prompts[:prompts]]
    collate = PromptCollate(tokenizer.pad_token_id)
    return DataLoader(list(enumerate(encoded)), batch_size=batch_size, collate_fn=collate)


def make_algo(**overrides) -> PPOConfig:
    settings = dict(
        reward=RewardSource.gold, critic_init=CriticInit.policy, max_steps=2, ppo_epochs=2,
        num_minibatches=2, samples_per_prompt=2, scheduler=Scheduler.constant,
    )
    return PPOConfig(**{**settings, **overrides})


def make_module(task, checkpoint, algo: PPOConfig, reward_fn=None) -> PPOModule:
    tokenizer = task.tokenizer()
    models = build_policy_critic(
        algo, ModelConfig(), PeftConfig(r=4), tokenizer,
        sft_path=str(checkpoint), reward_model_path=None,
    )
    return PPOModule(
        models, reward_fn or GoldTaskReward(task), algo,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        max_new_tokens=task.config.max_response_length, allowed_token_ids=task.allowed_token_ids(),
        max_grad_norm=1.0,
    )


def fit(module: PPOModule, loader, callbacks=(), **trainer_args) -> lightning.Trainer:
    steps = {"max_steps": optimizer_steps(module.algo), **trainer_args}
    trainer = quiet_trainer(callbacks=list(callbacks), **steps)
    trainer.fit(module, train_dataloaders=loader)
    return trainer


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


# ---------------------------------------------------------------------------------- identities
@pytest.mark.parametrize(
    ("mode", "temperature"),
    [(MemoryMode.separate, 1.0), (MemoryMode.shared_lora, 1.0), (MemoryMode.separate, 0.7)],
)
def test_first_minibatch_of_first_epoch_has_ratio_one_and_zero_approxkl(
    task, checkpoint, mode, temperature
):
    algo = make_algo(memory_mode=mode, max_steps=1, lr=1e-2, temperature=temperature)
    module = make_module(task, checkpoint, algo)
    fit(module, prompt_loader(task))
    first, *later = module.last_updates
    assert (first.epoch, first.minibatch) == (0, 0)
    assert first.ratio.item() == 1.0 and first.approxkl.item() == 0.0
    assert first.clipfrac.item() == 0.0
    assert len(later) == updates_per_step(algo) - 1
    assert any(stats.approxkl.item() > 0 for stats in later)  # the policy did move


# ------------------------------------------------------------------------------------- a run
def test_ppo_gt_run_logs_every_metric_and_trains_policy_and_critic_only(task, checkpoint):
    algo = make_algo(adaptive_kl=True, kl_horizon=10, kl_target=6.0)
    module = make_module(task, checkpoint, algo)
    models = module.policy_critic
    before = {role: snapshot(net) for role, net in models.roles.items()}
    trainer = fit(module, prompt_loader(task))

    assert trainer.global_step == optimizer_steps(algo) == 8
    assert module.lr_schedulers().last_epoch == trainer.global_step
    metrics = trainer.callback_metrics
    for name in [f"train/{name}" for name in LOGGED] + TIMING:
        assert name in metrics, name
        assert torch.isfinite(metrics[name]), name
    assert metrics["time/generation_s"] > 0 and metrics["train/val/num_eos_tokens"] >= 0
    for role in ("policy", "critic"):
        after = dict(models.roles[role].named_parameters())
        unchanged = [n for n, p in before[role].items() if torch.equal(p, after[n])]
        assert not unchanged, f"{role} parameters that did not train: {unchanged}"
    reference = dict(models.roles["reference"].named_parameters())
    assert all(torch.equal(p, reference[n]) for n, p in before["reference"].items())
    # Measured KL is far below the target: the adaptive coefficient shrinks after each iteration.
    assert module.kl_controller.value < algo.kl_coef
    assert metrics["train/kl_coef"].item() == pytest.approx(algo.kl_coef * (1 - 0.2 * 8 / 10))
    groups = module.optimizers().optimizer.param_groups
    assert [g["lr"] for g in groups] == [algo.lr, algo.critic_lr]


@pytest.mark.parametrize("mode", [MemoryMode.separate, MemoryMode.shared_lora])
def test_validation_scores_the_policy_as_an_implicit_reward_model(task, checkpoint, mode):
    # beta = kl_coef; the reference is the SFT policy, loaded here afresh from disk, and
    # validation (at the end of the run) reads the trained policy.
    algo = make_algo(memory_mode=mode, lr=3e-2, kl_coef=0.2)
    module = make_module(task, checkpoint, algo)
    trainer = quiet_trainer(max_steps=optimizer_steps(algo))
    pairs = heldout_pair_loader(task)
    trainer.fit(module, train_dataloaders=prompt_loader(task), val_dataloaders=pairs)
    reference = load_causal_lm(str(checkpoint), ModelConfig(), task.tokenizer(), trainable=False)
    expected = direct_implicit_rm(module.policy, reference, pairs, algo.kl_coef,
                                  task.allowed_token_ids())
    metrics = trainer.callback_metrics
    for name, value in expected.items():
        assert metrics[name].item() == pytest.approx(value, abs=1e-5), name


def test_fixed_kl_coefficient_stays(task, checkpoint):
    algo = make_algo(max_steps=1, ppo_epochs=1)
    module = make_module(task, checkpoint, algo)
    fit(module, prompt_loader(task))
    assert module.kl_controller.value == algo.kl_coef


# ---------------------------------------------------------------------------------- whitening
def random_rollout(seed: int = 0, rows: int = 6, width: int = 5) -> Rollout:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (rows,), generator=gen)
    mask = (torch.arange(width) < lengths[:, None]).long()

    def per_token(scale: float) -> torch.Tensor:
        return torch.randn(rows, width, generator=gen) * scale * mask

    return Rollout(
        prompt_ids=torch.ones(rows, 2, dtype=torch.long), prompt_mask=torch.ones(rows, 2),
        response_ids=torch.ones(rows, width, dtype=torch.long), response_mask=mask,
        eos_found=lengths < width, logprobs=per_token(1.0) - 2 * mask,
        ref_logprobs=per_token(1.0) - 2 * mask, values=per_token(3.0), entropy=per_token(1.0).abs(),
        scores=torch.randn(rows, generator=gen) * 4 + 3,
    )


def test_logprob_gap_is_the_mean_absolute_gap_over_response_tokens():
    rollout = random_rollout(seed=4)
    mask = rollout.response_mask
    shaped = ShapedRewards(torch.zeros_like(rollout.logprobs), torch.zeros_like(rollout.logprobs),
                           rollout.scores)
    assert "rollout/logprob_gap" not in rollout_metrics(rollout, shaped)  # the sampler said none
    # The sampler drew every token 0.25 nats likelier than the trainer's forward says, but the
    # first row's first token 1.25 less likely; padding (50 there) never counts.
    offset = 0.25 * torch.ones_like(rollout.logprobs)
    offset[0, 0] = -1.25
    sampler = torch.where(mask > 0, rollout.logprobs + offset, 50.0)
    gap = rollout_metrics(dataclasses.replace(rollout, sampler_logprobs=sampler), shaped)
    real = int(mask.sum())
    expected = (0.25 * (real - 1) + 1.25) / real
    assert float(gap["rollout/logprob_gap"]) == pytest.approx(expected, rel=1e-5)


def test_reward_whitening_flag_rescales_rewards_and_keeps_their_mean():
    rollout = random_rollout()
    mask = rollout.response_mask
    plain = shape(rollout, make_algo(whiten_rewards=False), 0.1, identity)
    whitened = shape(rollout, make_algo(whiten_rewards=True), 0.1, identity)
    kl = rollout.logprobs - rollout.ref_logprobs
    expected = shape_rewards(rollout.scores, kl, mask, 0.1, 1.0, rollout.eos_found)
    torch.testing.assert_close(plain.rewards, expected.rewards)
    assert masked_var(plain.rewards, mask).item() != pytest.approx(1.0, abs=1e-3)
    assert masked_var(whitened.rewards, mask).item() == pytest.approx(1.0, abs=1e-4)
    assert masked_mean(whitened.rewards, mask).item() == pytest.approx(
        masked_mean(plain.rewards, mask).item(), abs=1e-5
    )
    torch.testing.assert_close(whitened.non_score_reward, plain.non_score_reward)
    assert whitened.rewards[mask == 0].eq(0).all()


def test_advantage_whitening_flag_normalises_advantages_not_returns():
    rollout = random_rollout()
    mask, shaped = rollout.response_mask, shape(rollout, make_algo(), 0.1, identity)
    rewards = shaped.rewards
    raw = advantages(rollout, shaped, make_algo(whiten_advantages=False), identity, kl_coef=0.1)
    white = advantages(rollout, shaped, make_algo(whiten_advantages=True), identity, kl_coef=0.1)
    expected = gae(rewards, rollout.values, mask, 1.0, 0.95)
    torch.testing.assert_close(raw.advantages, expected.advantages)
    torch.testing.assert_close(white.returns, expected.returns)
    assert masked_mean(white.advantages, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_var(white.advantages, mask).item() == pytest.approx(1.0, abs=1e-4)
    assert abs(masked_mean(raw.advantages, mask).item()) > 1e-3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _whiten_in_process(rank: int, port: int, parts: list[Rollout], out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=len(parts))

    def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
        torch.distributed.all_reduce(tensor)
        return tensor

    part = parts[rank]
    whitened = masked_whiten(part.values, part.response_mask, sum_fn=all_reduce)
    # Plain lists: a tensor would travel as shared memory that vanishes when this process exits.
    out.put((rank, whitened.tolist()))
    torch.distributed.destroy_process_group()


def test_whitening_across_two_processes_equals_whitening_the_whole_batch():
    whole = random_rollout(seed=3, rows=8)
    parts = [whole.rows(slice(0, 4)), whole.rows(slice(4, 8))]
    context = multiprocessing.get_context("fork")
    out, port = context.Queue(), _free_port()
    workers = [
        context.Process(target=_whiten_in_process, args=(rank, port, parts, out))
        for rank in range(2)
    ]
    for worker in workers:
        worker.start()
    results = dict(out.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    expected = masked_whiten(whole.values, whole.response_mask)
    torch.testing.assert_close(torch.tensor(results[0] + results[1]), expected)


class RankReport(lightning.Callback):
    """Writes what each process ended with: KL coefficient, logged KL, a policy checksum."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        report = (
            pl_module.kl_controller.value,
            float(trainer.callback_metrics["train/objective/kl"]),
            sum(float(p.double().sum()) for p in pl_module.policy.parameters()),
            trainer.global_step,
        )
        torch.save(report, self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.parametrize(
    ("mode", "advantage"),
    [
        (MemoryMode.separate, AdvantageEstimator.gae),
        (MemoryMode.shared_lora, AdvantageEstimator.gae),
        (MemoryMode.separate, AdvantageEstimator.grpo),  # dapo: a divisor over both processes
    ],
)
def test_two_processes_take_the_same_decisions(task, checkpoint, tmp_path, mode, advantage):
    loss_type = LossType.dapo if advantage == AdvantageEstimator.grpo else LossType.bnpo
    algo = make_algo(memory_mode=mode, adaptive_kl=True, kl_horizon=10, advantage=advantage,
                     loss_type=loss_type)
    module = make_module(task, checkpoint, algo)
    fit(module, prompt_loader(task, batch_size=2), callbacks=[RankReport(tmp_path)],
        strategy="ddp_fork", devices=2)
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert first == second  # same KL coefficient, reduced KL, synchronised weights
    assert first[3] == optimizer_steps(algo)
    assert first[0] < algo.kl_coef


# -------------------------------------------------------------------------------- memory modes
def test_shared_lora_holds_fewer_parameter_bytes_than_separate(task, checkpoint):
    def role_bytes(module: PPOModule) -> int:
        params = {id(p): p for net in module.roles.values() for p in net.parameters()}
        return sum(p.numel() * p.element_size() for p in params.values())

    separate = make_module(task, checkpoint, make_algo(memory_mode=MemoryMode.separate))
    shared = make_module(task, checkpoint, make_algo(memory_mode=MemoryMode.shared_lora))
    assert set(separate.roles) == {"policy", "reference", "critic"}
    assert set(shared.roles) == {"policy", "critic"}  # reference = policy base, adapters off
    assert role_bytes(shared) < role_bytes(separate) / 2
    assert shared.policy is shared.policy_critic.policy


# ---------------------------------------------------------------------- critic-free estimators
@pytest.mark.parametrize(
    ("advantage", "mode"),
    [
        (AdvantageEstimator.rloo, MemoryMode.separate),
        (AdvantageEstimator.grpo, MemoryMode.separate),
        (AdvantageEstimator.grpo, MemoryMode.shared_lora),
        (AdvantageEstimator.reinforce, MemoryMode.shared_lora),
    ],
)
def test_critic_free_estimators_hold_no_critic_and_train_the_policy(
    task, checkpoint, advantage, mode
):
    loss_type = LossType.dapo if advantage == AdvantageEstimator.grpo else LossType.bnpo
    algo = make_algo(advantage=advantage, memory_mode=mode, whiten_advantages=False,
                     loss_type=loss_type, lr=1e-2)
    module = make_module(task, checkpoint, algo)
    models = module.policy_critic
    assert not models.has_critic
    # The gold reward is a function, not a network: the roles are the policy and reference.
    assert set(module.roles) == ({"policy", "reference"} if mode == MemoryMode.separate
                                 else {"policy"})
    names = [name for name, _ in models.named_parameters()]  # inside module.policy_critic
    assert names and not [n for n in names if "critic" in n or "value_head" in n]
    trainable = {n: p.detach().clone() for n, p in models.named_parameters() if p.requires_grad}
    trainer = fit(module, prompt_loader(task))

    metrics = trainer.callback_metrics
    for name in [f"train/{name}" for name in LOGGED if name not in VALUE_METRICS] + TIMING:
        assert name in metrics and torch.isfinite(metrics[name]), name
    assert not [name for name in metrics if name.removeprefix("train/") in VALUE_METRICS]
    assert [g["name"] for g in module.optimizers().optimizer.param_groups] == ["policy"]
    after = dict(models.named_parameters())
    unchanged = [n for n, p in trainable.items() if torch.equal(p, after[n])]
    assert trainable and not unchanged, unchanged
    first = module.last_updates[0]
    assert first.ratio.item() == 1.0 and first.value_loss is None


def test_each_estimator_is_its_pure_function_on_the_penalised_scores():
    rollout = random_rollout(seed=5, rows=6)
    mask, kl_coef = rollout.response_mask, 0.1
    algo = make_algo(samples_per_prompt=3, whiten_advantages=False)
    shaped = shape(rollout, algo, kl_coef, identity)
    kl = rollout.logprobs - rollout.ref_logprobs  # k1, the default estimator
    rewards = sequence_rewards(shaped.penalised_scores, kl, mask, kl_coef)
    expected = {
        AdvantageEstimator.rloo: rloo_advantages(rewards, 3),
        AdvantageEstimator.grpo: grpo_advantages(shaped.penalised_scores, 3),
        AdvantageEstimator.reinforce: reinforce_advantages(rewards, 0.7),
    }
    for estimator, per_sequence in expected.items():
        algo = make_algo(advantage=estimator, samples_per_prompt=3, whiten_advantages=False)
        out = advantages(rollout, shaped, algo, identity, kl_coef=kl_coef, baseline=0.7)
        torch.testing.assert_close(out.advantages, per_token(per_sequence, mask))
        assert out.returns is None  # no critic, no value targets
    # Whitening, when asked for, is the same token-level whitening as GAE's.
    algo = make_algo(advantage=AdvantageEstimator.rloo, samples_per_prompt=3)
    white = advantages(rollout, shaped, algo, identity, kl_coef=kl_coef)
    torch.testing.assert_close(white.advantages, masked_whiten(per_token(rloo_advantages(
        rewards, 3), mask), mask))


def test_dapo_divisor_is_the_rollouts_tokens_per_update_of_every_process():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])  # 3 + 1 + 4 = 8 tokens
    assert tokens_per_update(mask, 2, identity, 1) == 4.0  # 8 / (2 updates x 1 process)
    # Two processes holding the same count: the all-reduced 16 / (2 updates x 2 processes) = 4.
    assert tokens_per_update(mask, 2, lambda t: 2 * t, 2) == 4.0


def test_reinforce_baseline_moves_after_each_iteration_and_is_checkpointed(
    task, checkpoint, tmp_path
):
    algo = make_algo(advantage=AdvantageEstimator.reinforce, whiten_advantages=False,
                     baseline_decay=0.5)
    module = make_module(task, checkpoint, algo)
    saver = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1)
    trainer = fit(module, prompt_loader(task), callbacks=[saver], enable_checkpointing=True)
    metrics = trainer.callback_metrics
    # The last iteration used b (logged) and then moved it: b' = 0.5 b + 0.5 mean R.
    used, reward = metrics["train/baseline"].item(), metrics["train/objective/rlhf_reward"].item()
    assert used != 0.0  # the first iteration moved it away from 0
    assert module.baseline.value == pytest.approx(0.5 * used + 0.5 * reward, rel=1e-6)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["ppo_reward_baseline"] == module.baseline.value
    fresh = make_module(task, checkpoint, algo)
    fresh.on_load_checkpoint(saved)
    assert fresh.baseline.value == module.baseline.value


# ------------------------------------------------------------------------- non-finite values
class PoisonedReward:
    """The gold reward, turned into NaN from the ``poison_from``-th call on."""

    def __init__(self, task: SyntheticTask, poison_from: int) -> None:
        self.gold, self.poison_from, self.calls = GoldTaskReward(task), poison_from, 0

    def __call__(self, prompt_ids, prompt_mask, response_ids, response_mask) -> torch.Tensor:
        self.calls += 1
        scores = self.gold(prompt_ids, prompt_mask, response_ids, response_mask)
        return scores if self.calls < self.poison_from else torch.full_like(scores, float("nan"))


def test_nan_reward_stops_the_run_naming_iteration_and_scores(task, checkpoint):
    module = make_module(task, checkpoint, make_algo(), reward_fn=PoisonedReward(task, 1))
    with pytest.raises(NonFiniteError, match=r"iteration 0 .*scores"):
        fit(module, prompt_loader(task))


def test_nan_keeps_the_last_checkpoint_from_the_last_good_iteration(task, checkpoint, tmp_path):
    algo = make_algo(max_steps=3)
    # Two scoring chunks per iteration: the third call is iteration 1's first chunk.
    module = make_module(task, checkpoint, algo, reward_fn=PoisonedReward(task, 3))
    saver = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1)
    with pytest.raises(NonFiniteError, match=r"iteration 1 .*scores"):
        fit(module, prompt_loader(task), callbacks=[saver], enable_checkpointing=True)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["global_step"] == updates_per_step(algo)
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
    assert saved["ppo_kl_coef"] == algo.kl_coef


# ---------------------------------------------------------------------------------------- sizes
def test_sizes_divide_exactly_or_fail_naming_the_keys():
    assert optimizer_steps(make_algo(max_steps=3, ppo_epochs=2, num_minibatches=4)) == 24
    assert exact_div(12, 4, "rows") == 3
    with pytest.raises(ValueError, match="rows: 10 does not split exactly into 4"):
        exact_div(10, 4, "rows")
    with pytest.raises(ValueError, match="algo.num_minibatches"):
        minibatch_size(6, 4)


# ----------------------------------------------------------------------------------- learning
def gold_reward_of_samples(module: PPOModule, task: SyntheticTask, samples: int = 16) -> float:
    loader = prompt_loader(task, batch_size=len(task.train_prompts))
    batch = next(iter(loader))
    torch.manual_seed(123)
    algo = module.algo
    module.algo = dataclasses.replace(algo, samples_per_prompt=samples)
    responses = module.draw(batch)
    module.algo = algo
    return task.gold_reward_ids(responses.prompt_ids, responses.response_ids).mean().item()


@pytest.mark.slow
def test_ppo_gt_raises_the_gold_reward_on_the_exact_task(task, checkpoint):
    torch.manual_seed(0)
    algo = make_algo(max_steps=40, lr=3e-3, critic_lr=3e-3, kl_coef=0.01, ppo_epochs=4)
    module = make_module(task, checkpoint, algo)
    before = gold_reward_of_samples(module, task)
    fit(module, prompt_loader(task, batch_size=4))
    after = gold_reward_of_samples(module, task)
    print(f"mean gold reward of samples: {before:.3f} -> {after:.3f}")
    assert after > before + 0.3
