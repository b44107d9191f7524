"""Entry points: ``leash train`` (one run, or a multirun with ``-m``) and ``python -m leash``.

This is the only module that calls ``hydra.utils.instantiate`` on the top-level config: it
validates the composed config, builds the Trainer, its loggers and callbacks, and hands ready
objects to the recipe of the chosen algorithm.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from leash.config import ConfigError, TrainConfig, validate, validate_inputs
from leash.pipeline.compose import register_all
from leash.pipeline.launcher import StageFailed, write_error
from leash.resources import conf_dir
from leash.run_lock import RunFolderBusy, run_folder_lock

log = logging.getLogger("leash")

USAGE = """usage: leash <command> [hydra overrides]   (`leash <overrides>` means `leash train`)

commands:
  train     one run of an algorithm (`leash train algo=sft`), or a sweep with -m
            (`leash train -m sweep=sft_lr`); `leash train --help` lists the config groups,
            `leash train --cfg job` prints the composed config.
  compare   the main job: SFT, reward model, PPO, PPO-GT and DPO from one SFT policy on the
            same pairs, then one table (`leash compare [overrides] [dpo.algo.beta=0.3 ...]`).
  report    the comparison table and plots of every run under a folder (a multirun included):
            `leash report DIR [--out OUT]`.
"""


def _instantiate_group(group: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a name -> config mapping (loggers, callbacks)."""
    if not group:
        return []
    return [hydra.utils.instantiate(node) for node in group.values() if node is not None]


NOISE = ("💡 Tip:", "`weights_only` was not set")
"""Starts of third-party log messages a leash run drops: Lightning's advertisements, and its
notice on loading leash's own resume checkpoints (trusted files, written by this run)."""


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE)


def _calm_console() -> None:
    """One line per message and no third-party noise. Lightning attaches console handlers of its
    own; Hydra's root handler already prints (and writes the job's log file), so Lightning's are
    dropped, else every line appears twice. Lightning's tips, the warnings about a frozen
    reference in eval mode (by design) and a deprecation inside Lightning go; so do the progress
    bars of loading and saving local weights and data sets (a fraction of a second each)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # PPO's epoch is one batch of prompts but many optimizer steps, which is what is logged.
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller")
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _fail(error: Exception, code: int) -> NoReturn:
    """End the job on an expected error with its message, no traceback: a single run prints it
    and exits with ``code``; a multirun job logs it and re-raises, so that Hydra records this
    job as failed and goes on with the next one. Either way the message is left in the run
    folder, for a parent that launched this run as a stage (:func:`write_error`)."""
    write_error(HydraConfig.get().runtime.output_dir, str(error))
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        log.error("%s", error)
        raise error
    print(f"leash train: {error}", file=sys.stderr)
    raise SystemExit(code) from None


def train_job(cfg: DictConfig) -> None:
    """One `leash train` job: validate, build the Trainer, run the algorithm's recipe.

    Expected errors end it with their message and no traceback: an invalid config or unusable
    data (:class:`~leash.data.errors.DataError`) with status 2; a run folder another trainer
    holds (:mod:`leash.run_lock`) or a non-finite training quantity
    (:class:`~leash.modules.guard.NonFiniteError`) with 1; a failed upstream stage with the
    child's own status and message.
    """
    try:
        typed = validate(cfg)
        validate_inputs(typed)
    except ConfigError as error:
        _fail(error, 2)
    try:
        with run_folder_lock(typed.paths.output_dir):
            _train(cfg, typed)
    except RunFolderBusy as error:
        _fail(error, 1)


def _train(cfg: DictConfig, typed: TrainConfig) -> None:
    """Build the Trainer, its loggers and callbacks, and run the recipe of a valid config."""
    import lightning  # heavy imports (torch, transformers) only once the config is valid

    from leash.data.errors import DataError
    from leash.logging_wandb import finishing_wandb
    from leash.modules.guard import NonFiniteError
    from leash.pipeline.recipes import run_recipe
    from leash.runtime import SeedAtSetup, set_threads

    _calm_console()
    set_threads(typed.threads)
    with finishing_wandb():  # the W&B run is closed even when the job raises
        lightning.seed_everything(typed.seed, workers=True)
        loggers = _instantiate_group(cfg.logger)
        callbacks = [SeedAtSetup(), *_instantiate_group(cfg.callbacks)]
        callbacks = _without_logger_needs(callbacks, loggers)
        trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False
        )
        try:
            run_recipe(typed, trainer, list(HydraConfig.get().overrides.task))
        except DataError as error:
            _fail(error, 2)
        except NonFiniteError as error:
            _fail(error, 1)
        except StageFailed as error:  # the child's own line, said again as ours
            _fail(error, error.exit_code)


def _without_logger_needs(callbacks: list, loggers: list) -> list:
    """The callbacks, less the learning-rate monitor when no logger is set (``logger=none``):
    Lightning refuses to start a monitor with nowhere to log."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    return [c for c in callbacks if loggers or not isinstance(c, LearningRateMonitor)]


def _train_main(argv: Sequence[str]) -> None:
    register_all()
    main_fn = hydra.main(version_base=None, config_path=str(conf_dir()), config_name="train")(
        train_job
    )
    # argv[0] stays the real program: Lightning's DDP launcher re-runs `argv[0] argv[1:]` for
    # every other rank, which lands in `leash <overrides>`, i.e. `train` (see `main`).
    sys.argv = [sys.argv[0], *argv]
    main_fn()


def main(argv: Sequence[str] | None = None) -> None:
    """``leash <command> ...``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command == "train":
        _train_main(rest)
    elif command == "compare":
        from leash.pipeline.compare import main as compare_main

        raise SystemExit(compare_main(rest))
    elif command == "report":
        from leash.report.main import main as report_main

        raise SystemExit(report_main(rest))
    elif "=" in command or command.startswith("-"):  # bare overrides or Hydra flags: train
        _train_main(argv)
    else:
        print(f"leash: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
