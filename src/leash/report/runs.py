"""Finding run folders under a directory and reading each into a :class:`RunRecord`.

A run folder is any folder holding ``.hydra/config.yaml`` (what ``leash train`` writes, one per
job of a multirun too). A run is *finished* when its ``metrics.json`` exists and reads; anything
else (killed, crashed, still running) is *failed*, so a report never drops a run silently.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

FINISHED = "finished"
FAILED = "failed"
_RESOLVER_CALL = re.compile(r"\$\{[\w.\-]+:")


@dataclass(frozen=True)
class FrontierCurve:
    """The exact optimal reward-KL curve of a run's reference (its ``frontier.json``)."""

    beta: tuple[float | None, ...]
    """β of each point; the first is None (β = inf: the reference itself, KL 0)."""
    kl: tuple[float, ...]
    """Mean KL(π*_β ‖ π_ref) in nats, non-decreasing."""
    reward: tuple[float, ...]
    """Mean gold reward of π*_β, non-decreasing."""

    def reward_at(self, kl: float) -> float:
        """Optimal reward at ``kl`` (linear interpolation; the last value beyond the grid)."""
        return float(np.interp(kl, self.kl, self.reward))

    @property
    def reference_reward(self) -> float:
        """Gold reward of the reference (the curve's KL-0 point)."""
        return self.reward[0]


@dataclass
class RunRecord:
    """Everything a report knows about one run folder."""

    path: Path
    """The run folder."""
    name: str
    """Display name: ``run_name``, plus the overrides that tell it apart from its namesakes."""
    algo: str
    """``algo.name`` of the run's config."""
    status: str
    """``finished`` (metrics.json read) or ``failed``."""
    config: dict[str, Any]
    """The composed config; references to other keys resolved, resolver calls left as text."""
    overrides: list[str] = field(default_factory=list)
    """The job's command-line overrides (``.hydra/overrides.yaml``)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Final logged metrics (``train/*``, ``val/*``, ``eval/*`` ...); empty when failed."""
    resources: dict[str, Any] = field(default_factory=dict)
    """The ``resources`` block of metrics.json; empty when failed."""
    frontier: FrontierCurve | None = None
    """The exact optimal frontier of the run's reference, when it wrote one."""
    note: str = ""
    """Why a failed run counts as failed."""
    artifacts: dict[str, str] = field(default_factory=dict)
    """Folders the run used or produced (``artifacts.json``: policy, reference, ...)."""

    def metric(self, key: str) -> float | None:
        """A final metric, or None when the run did not log it."""
        value = self.metrics.get(key)
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the whole record."""
        frontier = None
        if self.frontier is not None:
            frontier = {
                "beta": list(self.frontier.beta),
                "kl": list(self.frontier.kl),
                "reward": list(self.frontier.reward),
            }
        return {
            "path": str(self.path),
            "name": self.name,
            "algo": self.algo,
            "status": self.status,
            "note": self.note,
            "overrides": self.overrides,
            "metrics": self.metrics,
            "resources": self.resources,
            "config": self.config,
            "frontier": frontier,
            "artifacts": self.artifacts,
        }


def _natural_key(path: Path) -> list:
    """Sort key under which ``2`` comes before ``10`` (multirun job folders)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file()


def find_run_dirs(root: Path) -> list[Path]:
    """Every run folder under ``root`` (``root`` included), in natural path order.

    A folder with ``.hydra`` but no ``metrics.json`` that contains other run folders is a parent
    of runs (e.g. a comparison driving stages), not a failed run, and is left out.
    """
    found = [Path(d) for d, _, _ in os.walk(root) if _is_run_dir(Path(d))]
    found_set = set(found)
    parents = {parent for run in found for parent in run.parents if parent in found_set}
    keep = [p for p in found if p not in parents or (p / "metrics.json").is_file()]
    return sorted(keep, key=_natural_key)


def _plain(node: DictConfig | ListConfig) -> Any:
    """The container of ``node``, each value resolved when it can be (one that cannot keeps
    its interpolation string)."""
    raw = OmegaConf.to_container(node, resolve=False)
    keys = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
    out: dict | list = {} if isinstance(node, DictConfig) else []
    for key in keys:
        try:
            value = node[key]
        except OmegaConfBaseException:
            value = raw[key]
        if isinstance(value, DictConfig | ListConfig):
            value = _plain(value)
        if isinstance(out, dict):
            out[key] = value
        else:
            out.append(value)
    return out


def _freeze_resolver_calls(raw: Any) -> Any:
    """Escape every string that calls a resolver (``${oc.env:...}``, ``${hydra:...}``): read
    here, it would describe this process (its environment), not the run."""
    if isinstance(raw, dict):
        return {key: _freeze_resolver_calls(value) for key, value in raw.items()}
    if isinstance(raw, list):
        return [_freeze_resolver_calls(value) for value in raw]
    if isinstance(raw, str) and _RESOLVER_CALL.search(raw):
        return raw.replace("${", "\\${")
    return raw


def _read_config(run_dir: Path) -> dict[str, Any]:
    raw = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
    return _plain(OmegaConf.create(_freeze_resolver_calls(raw)))


def _read_overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(item) for item in OmegaConf.load(path)]


def _read_frontier(run_dir: Path) -> FrontierCurve | None:
    path = run_dir / "frontier.json"
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    return FrontierCurve(
        beta=tuple(None if b is None else float(b) for b in payload["beta"]),
        kl=tuple(float(v) for v in payload["kl"]),
        reward=tuple(float(v) for v in payload["reward"]),
    )


def _read_json(path: Path) -> dict[str, Any]:
    """A small JSON object file, or {} when it is missing or unreadable."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return {}


REFERENCE_SCORES = ("rm_score", "judge_score")
"""Scores a run reports of its reference's samples too (``eval/reference_<name>``)."""


def fill_reference_scores(runs: list[RunRecord]) -> None:
    """Give an SFT run the scores its own run could not compute (the proxy reward model is
    trained from the SFT policy, after it): those that runs evaluated against this very policy
    report of its samples (``eval/reference_<name>``, the same samples, drawn with the same
    stream), when they all agree. Its win rate against itself is then 1/2 exactly (ties)."""
    for sft in (run for run in runs if run.algo == "sft" and run.status == FINISHED):
        policies = {sft.artifacts.get("policy"), sft.artifacts.get("cached_policy")} - {None}
        downstream = [
            run for run in runs
            if run is not sft and run.status == FINISHED
            and run.artifacts.get("reference") in policies
        ]
        for name in REFERENCE_SCORES:
            values = {run.metric(f"eval/reference_{name}") for run in downstream} - {None}
            if f"eval/{name}" not in sft.metrics and len(values) == 1:
                sft.metrics[f"eval/{name}"] = values.pop()
                sft.metrics.setdefault("eval/win_rate", 0.5)
                sft.metrics.setdefault("eval/win_rate_se", 0.0)


def read_run(run_dir: Path) -> RunRecord:
    """Read one run folder; its name is the bare ``run_name`` until :func:`name_runs`."""
    config = _read_config(run_dir)
    algo = str((config.get("algo") or {}).get("name", "?"))
    run_name = config.get("run_name")
    record = RunRecord(
        path=run_dir,
        name=str(run_name) if run_name and "${" not in str(run_name) else algo,
        algo=algo,
        status=FAILED,
        config=config,
        overrides=_read_overrides(run_dir),
        frontier=_read_frontier(run_dir),
        artifacts=_read_json(run_dir / "artifacts.json"),
    )
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        record.note = "no metrics.json (crashed, killed or still running)"
        return record
    try:
        payload = json.loads(metrics_path.read_text())
    except json.JSONDecodeError as error:
        record.note = f"unreadable metrics.json: {error}"
        return record
    record.metrics = dict(payload.get("metrics") or {})
    record.resources = dict(payload.get("resources") or {})
    record.status = FINISHED
    return record


def _override_items(overrides: list[str]) -> dict[str, str]:
    """``key=value`` overrides as a mapping (``+``/``++`` prefixes dropped, deletions skipped)."""
    items = {}
    for text in overrides:
        key, sep, value = text.partition("=")
        if sep and not key.startswith("~"):
            items[key.lstrip("+")] = value
    return items


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its last part (``algo.beta`` -> ``beta``) unless that is ambiguous."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    pairs = zip(keys, last, strict=True)
    return {key: short if last.count(short) == 1 else key for key, short in pairs}


def name_runs(runs: list[RunRecord], root: Path) -> None:
    """Tell namesakes apart: append the overrides whose values differ between runs of the same
    name (``dpo-exact beta=0.3``), then, if names still clash, the folder relative to ``root``."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.name, []).append(run)
    for base, group in groups.items():
        if len(group) < 2:
            continue
        items = [_override_items(run.overrides) for run in group]
        keys = list(dict.fromkeys(key for item in items for key in item))
        differing = [k for k in keys if len({item.get(k) for item in items}) > 1]
        short = _short_keys(differing)
        for run, item in zip(group, items, strict=True):
            parts = [f"{short[k]}={item[k]}" for k in differing if k in item]
            run.name = " ".join([base, *parts])
    names = [run.name for run in runs]
    for run in runs:
        if names.count(run.name) > 1:
            where = run.path.relative_to(root) if run.path != root else Path(run.path.name)
            run.name = f"{run.name} [{where}]"


def load_runs(root: Path | str) -> list[RunRecord]:
    """Every run under ``root``, read and uniquely named, in natural path order."""
    root = Path(root)
    runs = [read_run(run_dir) for run_dir in find_run_dirs(root)]
    name_runs(runs, root)
    fill_reference_scores(runs)
    return runs
