"""`leash train algo=<each> trainer=ddp_cpu`: two CPU processes train like one process with the
same global batch, for every algorithm, through the command line a user types.

The same global batch: the one-process run takes ``data.batch_size=16`` rows a step (pairs, SFT
rows or prompts), each of the two processes 8, and the data module's sampler gives process r
rows r, r + 2, ... of one order (``data.shuffle=false``): together the same 16 rows. The online
algorithms sample: a prompt's responses depend on the prompt and the random state that every
process shares, not on the process that samples it (:func:`leash.rollout.rollout.row_generators`),
so both runs sample the same responses and what must be equal is everything.

Compared: the trained weights, by the norm of their difference against the norm of how far
training moved them (all-reducing two half-batch gradients adds float32 terms in another order;
where Adam divides a near-zero gradient by its own size, such a rounding can flip one
coordinate's step, which a max-abs comparison magnifies and a norm does not), and every metric
that the processes reduce: every ``val/*``, the gathered ``eval/implicit_rm_*`` and, for the PPO
family, ``train/*`` (the DPO family, SFT and the reward model log rank 0's own ``train/*``).
The weights must agree to 1% of their travel (measured: 0.001-0.2%); the real differences
this catches are far larger: each process's own token mean (SFT and PPO before their fix,
below) put them 8-26% of their travel apart, responses drawn from one
generator for the whole batch, or a random state that the model building moved, 100%.

PPO family: two iterations of 2 epochs of the default 4 minibatches (``bnpo``, the default). Both
runs draw the same minibatches of the global rollout (:mod:`leash.rollout.minibatches`); each
process weighs its part of a minibatch, of any size, by its share of the minibatch's tokens
(:meth:`leash.modules.guard.GuardedModule.share_of_processes`), which makes every token mean,
of the losses and of the update diagnostics, the one process's. Before this, each process's
own token mean put the weights 8-26% of their travel apart, and a process's own shuffle
drew other minibatches.

Online and iterative DPO: on the exact task two samples of a prompt are often the same
response, a tie and no pair, so processes train unequal numbers of pairs; the loss is the mean
over every process's pairs, as one process takes it (it was each process's own mean).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from killing import forked_train

pytestmark = pytest.mark.slow

DPO_LOSSES = ("dpo", "ipo", "cdpo", "robust_dpo", "simpo", "slic")
PPO_FAMILY = ("ppo", "ppo_gt", "rloo", "grpo", "reinforce")
COMMON = ("data.shuffle=false", "eval.enabled=false", "algo.warmup_steps=0",
          "trainer.log_every_n_steps=1")
PPO = ("algo.max_steps=2", "algo.ppo_epochs=2")
CASES: dict[str, tuple[str, ...]] = {
    "sft": ("algo.max_steps=4",),
    "reward": ("algo.max_steps=4",),
    "dpo": ("algo.max_steps=4",),
    # The other losses share DPO's data, reference and gradient path: two steps each.
    **{name: ("algo.max_steps=2",) for name in DPO_LOSSES if name != "dpo"},
    **{name: PPO for name in PPO_FAMILY},
    "online_dpo": ("algo.max_steps=4",),
    "iterative_dpo": ("algo.rounds=2", "algo.steps_per_round=2"),
}
"""Every algorithm, a few steps each."""
SCORED_BY_THE_REWARD_MODEL = ("ppo", "rloo", "grpo", "reinforce", "online_dpo", "iterative_dpo")
"""They read the shared reward model (ppo_gt the gold reward)."""
ALGORITHMS = list(CASES)
MEASURES_THE_PROCESS = ("time", "per_s", "memory", "mfu", "resources/")


def ddp_train(run: Path, overrides: tuple[str, ...], env: dict[str, str] | None = None) -> str:
    """``leash train <overrides> trainer=ddp_cpu`` as a command (Lightning re-runs it for the
    second process); its console output."""
    result = subprocess.run(
        [sys.executable, "-m", "leash", "train", *overrides, "trainer=ddp_cpu",
         f"hydra.run.dir={run}"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    return log


def one_train(run: Path, overrides: tuple[str, ...]) -> None:
    assert forked_train(run, overrides) == 0, (run.parent / f"{run.name}.log").read_text()[-4000:]


def final_metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())["metrics"]


def ties_per_step(run: Path) -> list[float]:
    """Online DPO's ``train/pairs/ties`` of every logged step (the CSV log)."""
    with (run / "logs" / "metrics.csv").open() as rows:
        return [float(row["train/pairs/ties"]) for row in csv.DictReader(rows)
                if row.get("train/pairs/ties")]


def reduced_metrics(run: Path, algorithm: str) -> dict[str, float]:
    """The final metrics of a run that every process contributes to (module docstring)."""
    metrics = final_metrics(run)
    prefixes = ("val/", "eval/implicit_rm", *(("train/",) if algorithm in PPO_FAMILY else ()))
    return {name: value for name, value in metrics.items()
            if name.startswith(prefixes) and not any(w in name for w in MEASURES_THE_PROCESS)}


def weights(folder: Path, algorithm: str) -> dict[str, torch.Tensor]:
    model_class = AutoModelForSequenceClassification if algorithm == "reward" else (
        AutoModelForCausalLM)
    return model_class.from_pretrained(folder).state_dict()


def travelled_and_apart(start: Path, one: Path, ddp: Path, algorithm: str) -> tuple[float, float]:
    """Norms of (one - start) over the weights both have, and of (ddp - one) over all."""
    first = AutoModelForCausalLM.from_pretrained(start).state_dict()
    alone, together = weights(one, algorithm), weights(ddp, algorithm)
    moved = [(alone[n] - first[n]).flatten() for n in alone if n in first]
    apart = [(together[n] - alone[n]).flatten() for n in alone]
    return float(torch.cat(moved).norm()), float(torch.cat(apart).norm())


def overrides_of(algorithm: str, sft_policy: Path, reward_model: Path) -> tuple[str, ...]:
    overrides = (f"algo={algorithm}", *CASES[algorithm], *COMMON, "data.max_eval_rows=64")
    if algorithm != "sft":
        overrides = (*overrides, f"upstream.sft_policy={sft_policy}")
    if algorithm in SCORED_BY_THE_REWARD_MODEL:
        overrides = (*overrides, f"upstream.reward_model={reward_model}")
    return overrides


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_two_ddp_processes_train_like_one_with_the_same_global_batch(
    algorithm, sft_policy, reward_model, shared_cache, tmp_path
):
    # An SFT run stores its policy in the cache, where a second run would only reuse it.
    caches = {run: tmp_path / f"{run}-cache" if algorithm == "sft" else shared_cache
              for run in ("one", "ddp")}
    common = overrides_of(algorithm, sft_policy, reward_model)
    one_train(tmp_path / "one", (*common, "data.batch_size=16",
                                 f"paths.cache_dir={caches['one']}"))
    env = dict(os.environ)
    if algorithm == "sft":  # the default thread count of a DDP process, checked below
        env.pop("OMP_NUM_THREADS", None)
    ddp_train(tmp_path / "ddp", (*common, "data.batch_size=8", f"paths.cache_dir={caches['ddp']}"),
              env)

    if algorithm in ("online_dpo", "iterative_dpo"):  # the processes train unequal pair counts
        assert any(ties_per_step(tmp_path / "one")), "no tie: the case tests nothing it should"
    folder = "reward_model" if algorithm == "reward" else "policy"
    artifacts = json.loads((tmp_path / "one" / "artifacts.json").read_text())
    start = Path(artifacts["base_model"]) if algorithm == "sft" else sft_policy
    travelled, apart = travelled_and_apart(
        start, tmp_path / "one" / folder, tmp_path / "ddp" / folder, algorithm
    )
    assert travelled > 0.05, "training moved nothing: the comparison would be vacuous"
    assert apart < 1e-2 * travelled, (apart, travelled)

    one, ddp = (reduced_metrics(tmp_path / run, algorithm) for run in ("one", "ddp"))
    assert "val/loss" in one or "eval/implicit_rm_accuracy" in one
    if algorithm in PPO_FAMILY:
        assert "train/objective/scores" in one
    assert set(one) == set(ddp)
    for name, value in one.items():
        assert ddp[name] == pytest.approx(value, rel=1e-3, abs=1e-4), name

    runtime = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["runtime"]
    expected = max(1, len(os.sched_getaffinity(0)) // 2) if algorithm == "sft" else 1
    assert runtime["threads"] == expected  # CPUs / processes, or $OMP_NUM_THREADS when set


def test_precomputed_reference_and_held_out_figures_with_unequal_shards(
    sft_policy, shared_cache, tmp_path
):
    """65 train and 33 held-out pairs: the second process's shard repeats the first row of each
    split. The reference log-probs are computed once, by one process, for every pair; the
    held-out figures (``val/*``, ``eval/implicit_rm_*``) count every pair once, as one process
    does."""
    common = ("algo=dpo", "algo.reference=precomputed", "algo.max_steps=2",
              f"upstream.sft_policy={sft_policy}", *COMMON, "data.max_train_rows=65",
              "data.max_eval_rows=33", "data.eval_batch_size=8")
    caches = {run: tmp_path / f"{run}-cache" for run in ("one", "ddp")}
    one_train(tmp_path / "one", (*common, "data.batch_size=16", f"paths.cache_dir={caches['one']}"))
    # The same pairs, a reference cache of its own: the DDP run computes its log-probs itself.
    shutil.copytree(caches["one"] / "pairs", caches["ddp"] / "pairs")
    log = ddp_train(tmp_path / "ddp", (*common, "data.batch_size=8",
                                       f"paths.cache_dir={caches['ddp']}"))
    assert log.count("cache: building reference_logps") == 1  # rank 0, before training
    assert log.count("cache: reusing reference_logps") == 1  # rank 1 reads it

    logps = {run: torch.load(next((cache / "reference_logps").glob("*/logps.pt")))
             for run, cache in caches.items()}
    for split, count in (("train", 65), ("eval", 33)):
        for side in (0, 1):  # chosen, rejected: every pair once, the values one process gives
            assert logps["ddp"][split][side].shape == (count,)
            assert logps["ddp"][split][side].isfinite().all()
            assert torch.equal(logps["ddp"][split][side], logps["one"][split][side])
    one, ddp = (reduced_metrics(tmp_path / run, "dpo") for run in ("one", "ddp"))
    held_out = [name for name in one if name.startswith(("eval/implicit_rm", "val/"))]
    assert len(held_out) == 3 + 7  # the implicit RM's, DPO's val/loss, rewards/*, logps/*
    for name in held_out:
        assert ddp[name] == pytest.approx(one[name], abs=1e-6), name
