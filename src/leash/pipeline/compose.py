"""Config composition in one place: the schema, the sweeps group, and ``compose`` from anywhere.

``leash train`` composes through ``hydra.main``; orchestration composes the configs of the
stages it starts (exactly as their child processes will) with :func:`compose_train`, inside a
running Hydra job or outside one.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from leash.config import register_configs
from leash.resources import conf_dir, sweeps_dir


def register_sweeps() -> None:
    """Offer every config in ``sweeps/`` as an option of the ``sweep`` group (``sweep=NAME``)."""
    store = ConfigStore.instance()
    for path in sorted(sweeps_dir().glob("*.yaml")):
        if path.stem.startswith("wandb_"):  # W&B sweep files are for `wandb sweep`, not Hydra
            continue
        store.store(group="sweep", name=path.stem, node=OmegaConf.load(path), package="_global_")


def register_all() -> None:
    """Everything ``conf/train.yaml`` composes from: the schemas, resolvers and sweeps."""
    register_configs()
    register_sweeps()


def compose_train(overrides: Sequence[str]) -> DictConfig:
    """The composed ``train`` config of ``overrides`` (inside a Hydra job or outside one)."""
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=list(overrides))
    register_all()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        return compose("train", overrides=list(overrides))
