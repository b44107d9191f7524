"""The prepared GPU check: leash's runs on one GPU in bf16, and leash's DPO beside TRL's.

    bash benchmarks/gpu_check.sh             # a CUDA machine: under 8 minutes on one GPU
    bash benchmarks/gpu_check.sh --dry-run   # the same code paths at a tiny size, on CPU

Part 1 runs ``leash train`` as a user does (each run its own process, the upstream artifacts in
a cache of the check's own) on a GPT-2-small-shaped model (12 layers, width 768, 12 heads;
random init and the built-in `long` task's local word tokenizer, nothing downloaded) in
bf16-mixed: SFT; DPO with a frozen reference copy; DPO with precomputed reference log-probs;
PPO with separate models; PPO with one shared base and LoRA adapters. DPO and PPO start from
the SFT run's policy; PPO's reward model is built as its upstream stage. From each run's
``metrics.json``: tokens/s, peak CUDA memory (``max_memory_allocated`` over the fit) and MFU.

Part 2 trains leash's ``DPOModule`` in a ``lightning.Trainer`` and TRL's ``DPOTrainer`` on the
same seeded GPT-2-small-shaped policy (vocabulary 50,257) and the same token ids
(``workload.py``), live reference, bf16 autocast in both, each in a fresh process: pairs/s,
tokens/s, peak CUDA memory, MFU, and leash / TRL ratios.

MFU is model FLOPs per second over the device's dense bf16 peak (``PEAK_FLOPS`` of
:mod:`leash.callbacks.resources`, matched on ``torch.cuda.get_device_name``; "unknown" for any
other device). Model FLOPs count the training updates only: per trained token, 6 per trained
parameter plus attention (:func:`~leash.callbacks.resources.decoder_training_flops`), once per
PPO epoch; frozen forwards, generation and scoring are work MFU does not count. A LoRA-trained
network counts as fully trained, and shared-LoRA's critic passes through the base are not
counted.

The figures go to ``benchmarks/results/gpu_check/gpu_check.json`` (the dry run's to a
temporary folder unless ``--out``); run folders and the cache live in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import RESULTS, PeakMemory, StepClock, emit, environment, interleave, print_table
from common import run_child as run_contender
from shapes import Size, sizes

GPT2_SMALL = Size("gpt2_small", words=50_253, hidden=768, layers=12, heads=12, prompt_words=63,
                  response_words=63, pairs_per_step=8, warmup_steps=3, timed_steps=20)  # fmt: skip
"""GPT-2 small's shape and vocabulary (50,253 words + 4 specials), 128-token sequences."""


@dataclass(frozen=True)
class Mode:
    """Where and how big: the GPU check, or its dry run on CPU."""

    name: str
    device: str
    trainer: tuple[str, ...]
    """Trainer (and thread) overrides of every run."""
    model: tuple[str, ...]
    data: str
    context: int
    """data.max_length: the sequence length a token attends over."""
    steps: int
    """SFT, DPO and reward-model optimizer steps."""
    ppo_iterations: int
    contest_size: Size


GPU = Mode("gpu", "cuda", ("trainer=gpu",),
           ("model.tiny.hidden_size=768", "model.tiny.num_layers=12", "model.tiny.num_heads=12"),
           "data=long", 48, steps=60, ppo_iterations=6, contest_size=GPT2_SMALL)  # fmt: skip
DRY_RUN = Mode("dry_run", "cpu", ("trainer=cpu", "trainer.precision=bf16-mixed", "threads=1"),
               (), "data=exact", 16, steps=4, ppo_iterations=1,
               contest_size=sizes(quick=True)["tiny"])  # fmt: skip
LAYERS_WIDTH = {"gpu": (12, 768), "dry_run": (2, 64)}
"""The model shape of each mode (conf/model/tiny.yaml for the dry run)."""
PPO_EPOCHS = 4
"""conf/algo/ppo.yaml's epochs over each rollout (every token is trained that many times)."""
RUNS = {
    "sft": ("algo=sft",),
    "dpo_copy": ("algo=dpo",),
    "dpo_precomputed": ("algo=dpo", "algo.reference=precomputed"),
    "ppo_separate": ("algo=ppo",),
    "ppo_shared_lora": ("algo=ppo", "algo.memory_mode=shared_lora", "algo.critic_init=policy",
                        "peft=lora"),
}  # fmt: skip
RUN_TIMEOUT_S = 300


# ------------------------------------------------------------------------------ the device
def device_peak(mode: Mode) -> tuple[str, float | None]:
    """The device's name and dense bf16 peak FLOP/s (None when unknown: CPUs included)."""
    import torch

    from leash.callbacks.resources import device_peak_flops

    if mode.device == "cpu":
        return "cpu", None
    device = torch.device("cuda", 0)
    return torch.cuda.get_device_name(device), device_peak_flops(device)


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None) -> float | None:
    return flops_per_token * tokens_per_s / peak if peak else None


# --------------------------------------------------------------------- part 1: leash train
def run_overrides(name: str, mode: Mode, work: Path) -> list[str]:
    """The `leash train` overrides of one run of the check."""
    common = [*RUNS[name], *mode.trainer, *mode.model, mode.data, "seed=0",
              f"paths.cache_dir={work / 'cache'}", "eval.max_prompts=16", "eval.num_samples=2"]
    if name == "sft":
        return [*common, f"algo.max_steps={mode.steps}"]
    common.append(f"upstream.sft_policy={work / 'sft' / 'policy'}")
    if name.startswith("dpo"):
        return [*common, f"algo.max_steps={mode.steps}"]
    return [*common, f"algo.max_steps={mode.ppo_iterations}",
            f'upstream.reward=["algo.max_steps={mode.steps}"]']  # fmt: skip


def update_flops(metrics: dict, name: str, mode: Mode) -> float:
    """Model FLOPs of the updates per processed token (see the module docstring)."""
    from leash.callbacks.resources import decoder_training_flops

    layers, width = LAYERS_WIDTH[mode.name]
    passes = PPO_EPOCHS if name.startswith("ppo") else 1
    trained = [role for role in metrics["resources"]["roles"].values()
               if role["trainable_parameters"] > 0]  # fmt: skip
    return passes * sum(decoder_training_flops(role["num_parameters"], layers, width,
                                               mode.context) for role in trained)  # fmt: skip


def leash_run(name: str, mode: Mode, work: Path, peak: float | None) -> dict:
    """One `leash train` run: its exit, wall time and resource figures."""
    from leash.pipeline.launcher import train_command

    run_dir = work / name
    started = time.perf_counter()
    with (work / f"{name}.log").open("w") as log:
        try:
            code = subprocess.run(train_command(run_overrides(name, mode, work), run_dir),
                                  stdout=log, stderr=subprocess.STDOUT,
                                  timeout=RUN_TIMEOUT_S).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = 124
    figures = {"exit": code, "wall_s": time.perf_counter() - started}
    if code or not (run_dir / "metrics.json").exists():
        tail = (work / f"{name}.log").read_text().splitlines()[-15:]
        return {**figures, "log_tail": tail}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    resources = metrics["resources"]
    flops = update_flops(metrics, name, mode)
    return {
        **figures,
        "tokens_per_s": resources["tokens_per_s"],
        "peak_memory_bytes": resources["peak_memory_bytes"],
        "peak_memory_kind": resources["peak_memory_kind"],
        "train_time_s": resources["train_time_s"],
        "steps": resources["steps"],
        "update_flops_per_token": flops,
        "mfu": mfu(flops, resources["tokens_per_s"], peak),
        "leash_mfu": resources["mfu"],
    }


# ------------------------------------------------------------------- part 2: leash vs TRL
class SyncedClock(StepClock):
    """A step clock that waits for the GPU before each timestamp."""

    def tick(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        super().tick()


def _contest_figures(clock: StepClock, size: Size, device: str, parameters: int,
                     memory: PeakMemory) -> dict:  # fmt: skip
    """pairs/s and tokens/s at steady state, peak memory (CUDA's, or RSS over the baseline)."""
    import torch

    steady = clock.steady(size.warmup_steps, size.pairs_per_step)
    tokens_per_pair = 2 * (size.prompt_tokens + size.response_tokens)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else memory.figures()["peak_mib"] * 2**20)  # fmt: skip
    return {"pairs_per_s": steady["per_s"], "tokens_per_s": steady["per_s"] * tokens_per_pair,
            "median_step_s": steady["median_step_s"], "peak_memory_bytes": int(peak),
            "parameters": parameters}  # fmt: skip


def leash_contender(size: Size, device: str) -> dict:
    """leash: DPOModule (frozen copy as reference) through lightning.Trainer, bf16-mixed."""
    import copy

    from dpo_vs_trl import BETA

    from leash.config import DPOConfig, Scheduler
    from leash.models.reference import FrozenCopy
    from leash.modules.dpo import DPOModule

    from workload import (
        ADAM_BETAS,
        LR,
        MAX_GRAD_NORM,
        causal_lm,
        leash_loader,
        lightning_ticks,
        parameter_count,
        quiet_lightning_trainer,
        workload_rows,
    )

    with PeakMemory() as memory:
        tok, texts, rows = workload_rows(size)
        policy = causal_lm(size, tok)
        algo = DPOConfig(beta=BETA, lr=LR, adam_betas=ADAM_BETAS, scheduler=Scheduler.constant,
                         warmup_steps=0, max_steps=size.total_steps, max_grad_norm=MAX_GRAD_NORM)
        module = DPOModule(policy, FrozenCopy(copy.deepcopy(policy)), algo)
        clock = SyncedClock()
        trainer = quiet_lightning_trainer(
            size.total_steps, [lightning_ticks(clock)], gradient_clip_val=MAX_GRAD_NORM,
            accelerator="gpu" if device == "cuda" else "cpu", precision="bf16-mixed",
        )  # fmt: skip
        trainer.fit(module, train_dataloaders=leash_loader(rows, texts, size, tok.pad_token_id))
    return _contest_figures(clock, size, device, parameter_count(policy), memory)


def trl_contender(size: Size, device: str) -> dict:
    """TRL: DPOTrainer with a live reference model, bf16 autocast."""
    import copy

    from datasets import Dataset
    from dpo_vs_trl import BETA
    from trl import DPOConfig, DPOTrainer

    from workload import (
        assert_same_tokens,
        causal_lm,
        hf_ticks,
        parameter_count,
        trainer_arguments,
        trl_columns,
        workload_rows,
    )

    with PeakMemory() as memory, tempfile.TemporaryDirectory() as output_dir:
        tok, texts, rows = workload_rows(size)
        policy = causal_lm(size, tok)
        arguments = {**trainer_arguments(size, output_dir), "use_cpu": device == "cpu",
                     "bf16": True}  # fmt: skip
        args = DPOConfig(**arguments, beta=BETA, loss_type=["sigmoid"],
                         precompute_ref_log_probs=False)  # fmt: skip
        clock = SyncedClock()
        trainer = DPOTrainer(
            model=policy, ref_model=copy.deepcopy(policy), args=args,
            train_dataset=Dataset.from_dict(trl_columns(texts)), processing_class=tok,
            callbacks=[hf_ticks(clock)],
        )  # fmt: skip
        assert_same_tokens(trainer.train_dataset, rows)
        trainer.train()
    return _contest_figures(clock, size, device, parameter_count(policy), memory)


CONTENDERS = {"leash": leash_contender, "trl": trl_contender}


def contest(mode: Mode, rounds: int, peak: float | None) -> dict:
    """leash and TRL alternating over rounds, each in a fresh process; medians per figure."""
    import statistics

    from leash.callbacks.resources import decoder_training_flops

    size = mode.contest_size
    script = Path(__file__).resolve()
    per_round = interleave(list(CONTENDERS), rounds, lambda name, _: run_contender(
        script, ["--child", name, "--mode", mode.name], timeout=RUN_TIMEOUT_S))  # fmt: skip
    summary = {}
    for name, results in per_round.items():
        figures = {key: statistics.median(r[key] for r in results)
                   for key in ("pairs_per_s", "tokens_per_s", "peak_memory_bytes")}  # fmt: skip
        flops = decoder_training_flops(results[0]["parameters"], size.layers, size.hidden,
                                       size.prompt_tokens + size.response_tokens)  # fmt: skip
        summary[name] = {**figures, "mfu": mfu(flops, figures["tokens_per_s"], peak)}
    ratios = {f"leash/trl {key}": summary["leash"][key] / summary["trl"][key]
              for key in ("pairs_per_s", "peak_memory_bytes")}  # fmt: skip
    return {"size": vars(size), "rounds": per_round, "median": summary, "ratios": ratios}


# ------------------------------------------------------------------------------- reporting
def _percent(value: float | None) -> str:
    return "unknown" if value is None else f"{100 * value:.1f}%"


def report(result: dict) -> None:
    """The check's tables on stdout."""
    rows = []
    for name, run in result["runs"].items():
        if run["exit"]:
            rows.append([name, f"FAILED (exit {run['exit']})", "", "", f"{run['wall_s']:.0f}"])
            continue
        rows.append([name, f"{run['tokens_per_s']:.0f}", _percent(run["mfu"]),
                     f"{run['peak_memory_bytes'] / 2**30:.2f}", f"{run['wall_s']:.0f}"])
    print_table(f"leash train on {result['device_name']} ({result['mode']})",
                ["run", "tokens/s", "MFU", "peak GiB", "wall s"], rows)  # fmt: skip
    for name, run in result["runs"].items():
        if run["exit"]:
            print(f"{name}'s log ends:\n  " + "\n  ".join(run["log_tail"]))
    if "error" in result["trl_contest"]:
        print(f"DPO, leash vs TRL: FAILED\n{result['trl_contest']['error']}")
        return
    median = result["trl_contest"]["median"]
    print_table("DPO: leash vs TRL, same model and token ids",
                ["contender", "pairs/s", "tokens/s", "MFU", "peak GiB"],
                [[name, f"{m['pairs_per_s']:.2f}", f"{m['tokens_per_s']:.0f}",
                  _percent(m["mfu"]), f"{m['peak_memory_bytes'] / 2**30:.2f}"]
                 for name, m in median.items()])  # fmt: skip
    for key, value in result["trl_contest"]["ratios"].items():
        print(f"{key}: {value:.2f}")


def check(mode: Mode, out: Path, rounds: int) -> int:
    """Run both parts, write the JSON, print the tables; 1 when a run failed."""
    started = time.perf_counter()
    name, peak = device_peak(mode)
    with tempfile.TemporaryDirectory(prefix="leash-gpu-check-") as work:
        runs = {run: leash_run(run, mode, Path(work), peak) for run in RUNS}
    try:
        versus = contest(mode, rounds, peak)
    except RuntimeError as error:  # a contender's process failed: its stderr tail is kept
        versus = {"error": str(error)[-4000:]}
    result = {"mode": mode.name, "device_name": name, "peak_bf16_flops": peak, "runs": runs,
              "trl_contest": versus, "environment": environment()}
    result["wall_s"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    result["path"] = str(out / "gpu_check.json")
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"total {result['wall_s']:.0f} s; figures in {result['path']}")
    return 1 if "error" in versus or any(run["exit"] for run in runs.values()) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="the same code paths at a tiny size on CPU (no GPU needed)")
    parser.add_argument("--out", type=Path, help="folder of gpu_check.json")
    parser.add_argument("--rounds", type=int, default=1, help="leash/TRL rounds")
    parser.add_argument("--child", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("gpu", "dry_run"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    mode = DRY_RUN if args.dry_run or args.mode == "dry_run" else GPU
    if args.child:  # a contender's own process
        emit(CONTENDERS[args.child](mode.contest_size, mode.device))
        return
    import torch

    if mode is GPU and not torch.cuda.is_available():
        print("no CUDA device")
        sys.exit(2)
    default = Path(tempfile.mkdtemp(prefix="leash-gpu-dry-run-")) if args.dry_run else (
        RESULTS / "gpu_check")  # fmt: skip
    sys.exit(check(mode, args.out or default, args.rounds))


if __name__ == "__main__":
    main()
