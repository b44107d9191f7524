"""The one parser of Hydra command-line overrides that orchestration reads and routes.

An override is ``[+|++|~]key.path=value``. ``leash compare`` routes ``<stage>.key=value`` to one
stage; a job passes its upstream keys (model, data, seed, ...) on to the stages it builds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

UPSTREAM_KEYS = (
    "model", "data", "seed", "trainer", "paths", "debug", "experiment", "eval", "threads"
)
"""Override keys a job passes on to the upstream stages it builds (not `algo`, not `peft`)."""

LOADER_KEYS = ("data.batch_size", "data.eval_batch_size", "data.num_workers", "data.shuffle")
"""How this job batches its data is its own business: an upstream stage keeps its own batching,
so a sweep over DPO batch sizes shares one SFT policy."""


def split_sign(override: str) -> tuple[str, str]:
    """``"+algo.lr=1"`` -> ``("+", "algo.lr=1")``: the add/force/delete sign and the rest."""
    body = override.lstrip("+~")
    return override[: len(override) - len(body)], body


def override_key(override: str) -> str:
    """The dotted key an override sets: ``"++algo.lr=1"`` -> ``"algo.lr"``."""
    return split_sign(override)[1].split("=", 1)[0]


def top_key(override: str) -> str:
    """The first component of an override's key: ``"algo.lr=1"`` -> ``"algo"``."""
    return override_key(override).split(".", 1)[0]


def route_by_prefix(overrides: Sequence[str], names: Iterable[str]) -> dict[str, list[str]]:
    """Each name's overrides: the shared ones, then its own with the ``<name>.`` prefix removed
    (``dpo.algo.beta=0.3`` goes to ``dpo`` as ``algo.beta=0.3``)."""
    names = tuple(names)
    routed = {name: [o for o in overrides if top_key(o) not in names] for name in names}
    for override in overrides:
        if top_key(override) in names:
            sign, body = split_sign(override)
            routed[top_key(override)].append(sign + body.split(".", 1)[1])
    return routed


def upstream_overrides(job_overrides: Sequence[str], algo: str, extra: Sequence[str]) -> list[str]:
    """The overrides of an upstream stage: this job's upstream keys, the stage's algo, extras."""
    kept = [
        o
        for o in job_overrides
        if top_key(o) in UPSTREAM_KEYS and override_key(o) not in LOADER_KEYS
    ]
    return [*kept, f"algo={algo}", *extra]
