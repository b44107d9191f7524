"""Compose `leash train` configs quickly, and check them as `leash train` does before loading.

Hydra's compose takes about half a second on a 2-core machine, mostly building the defaults
tree, so a battery of a hundred configs composes each set of config-group choices
(``algo=ppo``, ``data=files``) once and applies the remaining key overrides to a copy with
Hydra's own override code, which is the step compose ends with.

Run as a script (``python composing.py < cases.json``) it checks a list of override lists in a
fresh process and prints, as JSON, each one's error and whether torch was ever imported.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, open_dict

from leash.config import register_configs, validate, validate_inputs
from leash.pipeline.compose import register_sweeps
from leash.resources import conf_dir

GROUPS = {path.name for path in conf_dir().iterdir() if path.is_dir()} | {"sweep", "schema"}
"""Config groups: an override of one of these picks a config file, it sets no key."""


def _selects_configs(override: Override) -> bool:
    """Whether an override acts while the defaults tree is built (a group choice, or Hydra's)."""
    group = override.key_or_group.split("/")[0]
    return override.is_hydra_override() or override.package is not None or group in GROUPS


class Composer:
    """``compose("train", overrides)`` with each set of group choices composed only once."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self._bases: dict[tuple[str, ...], DictConfig] = {}
        self._parser = OverridesParser.create()

    def __call__(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self._parser.parse_overrides(list(overrides))
        choices = tuple(o.input_line for o in parsed if _selects_configs(o))
        if choices not in self._bases:
            self._bases[choices] = compose("train", overrides=list(choices))
        cfg = copy.deepcopy(self._bases[choices])
        ConfigLoaderImpl._apply_overrides_to_config(
            [o for o in parsed if not _selects_configs(o)], cfg
        )
        with open_dict(cfg):  # Hydra's run folder, which only a real run has
            cfg.paths.output_dir = str(self.output_dir)
        return cfg


@contextmanager
def composer(output_dir: Path) -> Iterator[Composer]:
    """A :class:`Composer` over the repository's conf/, with leash's schemas and sweeps."""
    register_configs()
    register_sweeps()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        yield Composer(output_dir)
    GlobalHydra.instance().clear()


@contextmanager
def inside_a_job() -> Iterator[None]:
    """Hydra's job state, as `leash train` has it: code that composes an upstream stage's
    config (``Stages._upstream``) runs inside it. Call within :func:`composer`."""
    HydraConfig.instance().set_config(compose("train", return_hydra_config=True))
    try:
        yield
    finally:
        HydraConfig.instance().cfg = None


def job_error(compose_job: Composer, overrides: Sequence[str]) -> str | None:
    """What `leash train <overrides>` reports before loading anything, or None when the config
    is valid: a composition error (with Hydra's chained cause) or validation's ConfigError."""
    try:
        validate_inputs(validate(compose_job(overrides)))
    except Exception as error:
        return f"{type(error).__name__}: {error}\n{error.__cause__ or ''}"
    return None


def main() -> None:
    """Check each override list read as JSON from stdin; print errors and the torch verdict."""
    cases = json.load(sys.stdin)
    with composer(Path.cwd() / "run") as compose_job:
        errors = [job_error(compose_job, overrides) for overrides in cases]
    json.dump({"errors": errors, "torch_imported": "torch" in sys.modules}, sys.stdout)


if __name__ == "__main__":
    main()
