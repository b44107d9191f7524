"""What the DPO reference strategies and the PPO memory modes cost: memory, speed, loss.

On one wider tiny GPT-2 and the same preference data, from one shared SFT policy:

- DPO with ``algo.reference=copy`` (a frozen copy of the policy in memory), ``precomputed``
  (reference log-probs computed once before training; no reference model while training) and
  ``peft=lora algo.reference=adapter`` (the reference is the base model with the LoRA adapter
  switched off, so only the adapter is trained);
- PPO-GT with ``algo.memory_mode=separate`` (policy, reference, critic as separate models) and
  ``shared_lora`` (one base model, LoRA adapters for the policy and the critic).

Each job is its own ``leash train`` process, so its peak memory (peak RSS on CPU, which
includes the Python/torch baseline) is its own. Writes ``reference_modes.md``/``.csv`` (the
table) and ``reference_modes.png`` (peak memory and resident parameters per mode; the DPO
train/loss trajectories), and checks that copy and precomputed follow the same trajectory:

    python experiments/reference_modes.py --out experiments/results/reference_modes \\
        --runs /tmp/rm/runs2

Defaults: 100 DPO steps, 10 PPO iterations, batch 32, the evaluation callback off
(``eval.enabled=false``); the SFT stage runs at its own defaults with the same model.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from leash.report.runs import RunRecord, read_run  # noqa: E402

MODEL = ["model.tiny.hidden_size=384", "model.tiny.num_layers=6", "model.tiny.num_heads=6"]
COMMON = ["eval.enabled=false", "callbacks.progress=null"]
DPO = ["algo=dpo", "trainer.log_every_n_steps=1"]
PPO = ["algo=ppo_gt", "trainer.log_every_n_steps=1"]
MODES = {
    "dpo_copy": [*DPO, "algo.reference=copy"],
    "dpo_precomputed": [*DPO, "algo.reference=precomputed"],
    "dpo_adapter": [*DPO, "peft=lora", "algo.reference=adapter"],
    "ppo_gt_separate": [*PPO, "algo.memory_mode=separate", "algo.critic_init=policy"],
    "ppo_gt_shared_lora": [
        *PPO,
        "algo.memory_mode=shared_lora",
        "algo.critic_init=policy",
        "peft=lora",
    ],
}
MIB = 2**20
RESULTS = Path(__file__).parent / "results" / "reference_modes" / "reference_modes.csv"


def train(run_dir: Path, overrides: list[str]) -> bool:
    """One `leash train` unless the folder already holds a finished run (resumable script)."""
    if (run_dir / "metrics.json").exists():
        return True
    command = [sys.executable, "-m", "leash", "train", *overrides, f"hydra.run.dir={run_dir}"]
    print("+", " ".join(command[1:]), flush=True)
    return subprocess.run(command, check=False).returncode == 0


def loss_curve(run: RunRecord, key: str = "train/loss") -> dict[int, float]:
    """``key`` per logged step, from the run's Lightning CSV log."""
    path = run.path / "logs" / "metrics.csv"
    if not path.is_file():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {int(row["step"]): float(row[key]) for row in rows if row.get(key)}


def role_mib(run: RunRecord, field: str) -> dict[str, float]:
    """``field`` (parameters, gradients, optimizer_state) of every model role, in MiB."""
    roles = run.resources.get("roles") or {}
    return {role: (info.get(field) or 0) / MIB for role, info in roles.items()}


def row(mode: str, run: RunRecord) -> dict[str, str]:
    """One table row; missing values are blank."""
    res = run.resources

    def fmt(value, spec: str) -> str:
        return "" if value is None else format(value, spec)

    fields = ("parameters", "gradients", "optimizer_state")
    params, grads, optim = (role_mib(run, field) for field in fields)
    per_role = "; ".join(
        f"{role} {params[role]:.1f}/{grads[role]:.1f}/{optim[role]:.1f}" for role in params
    )
    peak = res.get("peak_memory_bytes")
    return {
        "mode": mode,
        "status": run.status,
        "peak_MiB": fmt(None if peak is None else peak / MIB, ".0f"),
        "params_MiB": fmt(sum(params.values()), ".1f"),
        "grads_MiB": fmt(sum(grads.values()), ".1f"),
        "optim_MiB": fmt(sum(optim.values()), ".1f"),
        "per_role_param/grad/optim_MiB": per_role,
        "tokens_per_s": fmt(res.get("tokens_per_s"), ".0f"),
        "step_s": fmt(res.get("mean_step_time_s"), ".3f"),
        "steps": fmt(res.get("steps"), "d"),
        "train_loss": fmt(run.metric("train/loss") if run.algo == "dpo" else None, ".4f"),
        "val_loss": fmt(run.metric("val/loss") if run.algo == "dpo" else None, ".4f"),
    }


def write_table(rows: list[dict[str, str]], out: Path) -> str:
    with (out / "reference_modes.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r.values()) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    (out / "reference_modes.md").write_text(text)
    return text


def plot(runs: dict[str, RunRecord], path: Path) -> None:
    figure, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.8))
    names = list(runs)
    peak = [(runs[n].resources.get("peak_memory_bytes") or 0) / MIB for n in names]
    resident = [sum(role_mib(runs[n], "parameters").values()) for n in names]
    xs = range(len(names))
    bars.bar([x - 0.2 for x in xs], peak, width=0.4, color="tab:blue", label="peak memory")
    bars.bar([x + 0.2 for x in xs], resident, width=0.4, color="tab:orange",
             label="resident parameters (all roles)")
    for x, value in zip(xs, peak, strict=True):
        bars.text(x - 0.2, value, f"{value:.0f}", ha="center", va="bottom", fontsize=7)
    for x, value in zip(xs, resident, strict=True):
        bars.text(x + 0.2, value, f"{value:.0f}", ha="center", va="bottom", fontsize=7)
    labels = [n.replace("ppo_gt_", "ppo_gt\n").replace("dpo_", "dpo\n") for n in names]
    bars.set_xticks(list(xs), labels, fontsize=8)
    bars.set_ylabel("MiB")
    bars.set_title("(a) memory per mode (CPU: peak RSS incl. Python/torch)")
    bars.legend(fontsize=8)
    bars.grid(axis="y", alpha=0.3)
    styles = {"dpo_copy": "-", "dpo_precomputed": "--", "dpo_adapter": "-"}
    for name, style in styles.items():
        if name in runs:
            curve = loss_curve(runs[name])
            if curve:
                curves.plot(list(curve), list(curve.values()), ls=style, lw=1.5, label=name)
    curves.set_xlabel("optimizer step")
    curves.set_ylabel("DPO train/loss")
    curves.set_title("(b) DPO loss by reference mode")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def summary(path: Path = RESULTS) -> str:
    """experiments/README.md's sentences about the modes, from the committed CSV."""
    with path.open(newline="") as handle:
        rows = {row["mode"]: row for row in csv.DictReader(handle)}

    def value(mode: str, column: str) -> float:
        return float(rows[mode][column])

    copy, pre, adapter = "dpo_copy", "dpo_precomputed", "dpo_adapter"
    same = all(rows[copy][c] == rows[pre][c] for c in ("train_loss", "val_loss"))
    lowest = min((copy, pre, adapter), key=lambda m: value(m, "peak_MiB"))
    separate, shared = "ppo_gt_separate", "ppo_gt_shared_lora"
    faster = value(shared, "step_s") < value(separate, "step_s")
    losses = f"({rows[pre]['train_loss']} / {rows[pre]['val_loss']})"
    agreement = (
        f"ends with the same DPO train and validation loss as `copy` {losses}" if same else
        f"ends near `copy`'s DPO train and validation loss ({rows[pre]['train_loss']} / "
        f"{rows[pre]['val_loss']} against {rows[copy]['train_loss']} / {rows[copy]['val_loss']}: "
        "the two ways of computing the reference log-probs differ by float rounding, which the "
        "training steps amplify)"
    )
    return (
        f"What it shows: `precomputed` {agreement} while dropping the reference's "
        f"{value(copy, 'params_MiB') - value(pre, 'params_MiB'):.1f} MiB of parameters and its "
        f"forward pass ({value(copy, 'peak_MiB') - value(pre, 'peak_MiB'):.0f} MiB lower peak, "
        f"{100 * (value(pre, 'tokens_per_s') / value(copy, 'tokens_per_s') - 1):.0f}% more "
        f"tokens/s); `adapter` trains only LoRA ({rows[adapter]['grads_MiB']} MiB of gradients, "
        f"{rows[adapter]['optim_MiB']} MiB of optimizer state instead of "
        f"{rows[copy]['grads_MiB']} / {rows[copy]['optim_MiB']}), so its trajectory differs; "
        f"the lowest DPO peak is `{lowest.removeprefix('dpo_')}`'s. For PPO-GT, `shared_lora` "
        f"keeps one base model instead of policy, reference and critic copies "
        f"({rows[shared]['params_MiB']} vs {rows[separate]['params_MiB']} MiB of parameters, "
        f"{value(separate, 'peak_MiB') - value(shared, 'peak_MiB'):.0f} MiB lower peak) and is "
        f"{'faster' if faster else 'slower'} per iteration here ({rows[shared]['step_s']} vs "
        f"{rows[separate]['step_s']} s per training step)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/reference_modes"))
    parser.add_argument("--runs", type=Path, help="run folders (default: <out>/runs)")
    parser.add_argument("--dpo-steps", type=int, default=100)
    parser.add_argument("--ppo-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32, help="of the compared jobs")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_args()
    runs_dir = args.runs or args.out / "runs"
    args.out.mkdir(parents=True, exist_ok=True)
    shared = [*MODEL, *COMMON, *args.overrides]
    ok = train(runs_dir / "sft", ["algo=sft", *shared])
    sft = [f"upstream.sft_policy={(runs_dir / 'sft' / 'policy').resolve()}"]
    runs = {}
    for mode, overrides in MODES.items():
        steps = args.dpo_steps if mode.startswith("dpo") else args.ppo_steps
        extra = [f"data.batch_size={args.batch_size}", f"algo.max_steps={steps}"]
        if mode.startswith("dpo"):
            extra.append(f"trainer.val_check_interval={steps}")
        ok &= train(runs_dir / mode, [*overrides, *extra, *sft, *shared])
        runs[mode] = read_run(runs_dir / mode)
    print(write_table([row(mode, run) for mode, run in runs.items()], args.out))
    plot(runs, args.out / "reference_modes.png")
    copy, pre = loss_curve(runs["dpo_copy"]), loss_curve(runs["dpo_precomputed"])
    common = sorted(set(copy) & set(pre))
    if common:
        diff = max(abs(copy[s] - pre[s]) for s in common)
        print(f"copy vs precomputed: max |Δ train/loss| over {len(common)} steps = {diff:.2e}")
    print(f"figure: {args.out / 'reference_modes.png'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        print(summary())
        raise SystemExit(0)
    raise SystemExit(main())
