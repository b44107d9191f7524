"""Weights & Biases for leash jobs: one run per job, offline unless logged in, always finished.

``conf/logger/wandb.yaml`` builds its logger with :func:`wandb_logger`: the mode is chosen
without touching the network (:func:`select_mode`), the job's composed config goes to W&B as
flat dotted keys (``algo.beta``), and a multirun's jobs share one group. ``cli.py`` wraps each
job in :func:`finishing_wandb`, so its run is finished, with the job's exit code, even when the
job raises.
"""

from __future__ import annotations

import logging
import netrc
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from leash.atomic import write_text_atomic
from leash.checkpoints import resume_checkpoint

log = logging.getLogger(__name__)

API_HOSTS = ("api.wandb.ai", "api.forge.coreweave.com")
"""Hosts whose .netrc entry counts as a W&B login when ``WANDB_BASE_URL`` is not set."""


# ------------------------------------------------------------------------------------- mode
def _netrc_path(environ: Mapping[str, str]) -> Path | None:
    """The .netrc file W&B reads (``NETRC``, then ``~/.netrc``, then ``~/_netrc``), if any."""
    if environ.get("NETRC"):
        return Path(environ["NETRC"]).expanduser()
    home = Path(environ.get("HOME") or Path.home())
    return next((p for p in (home / ".netrc", home / "_netrc") if p.exists()), None)


def has_api_key(environ: Mapping[str, str] | None = None) -> bool:
    """Whether W&B credentials are available locally: an API key in the environment, an
    identity-token file, or a .netrc entry for the W&B host. No network is used."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = _netrc_path(environ)
    if path is None or not path.exists():
        return False
    try:
        entries = netrc.netrc(str(path))
    except (netrc.NetrcParseError, OSError) as error:
        log.warning("cannot read %s: %s", path, error)
        return False
    base_url = environ.get("WANDB_BASE_URL")
    hosts = (urlsplit(base_url).netloc,) if base_url else API_HOSTS
    return any((entries.authenticators(host) or (None, None, None))[2] for host in hosts)


def select_mode(environ: Mapping[str, str] | None = None) -> str:
    """W&B mode of a job: ``WANDB_MODE`` when set (``WANDB_DISABLED`` gives ``disabled``),
    else ``online`` when credentials are found locally, else ``offline``."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    if environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        return "disabled"
    return "online" if has_api_key(environ) else "offline"


# ----------------------------------------------------------------------------- config, names
def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys: ``{"algo": {"beta": 0.1}}`` ->
    ``{"algo.beta": 0.1}``. Lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def flat_config(path: str | Path) -> dict[str, Any]:
    """The composed job config Hydra saved (``<run>/.hydra/config.yaml``), resolved and flat.

    Interpolations resolve inside a Hydra job; elsewhere (no ``${hydra:...}``) an unresolvable
    config is logged as written, with a warning.
    """
    cfg = OmegaConf.load(path)
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        log.warning("logging %s unresolved: %s", path, error)
        container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    return flatten(container)


def run_naming(
    run_name: str, group: str | None, hydra_cfg: DictConfig | None
) -> tuple[str, str | None]:
    """Display name and group of this job's W&B run.

    A multirun job is ``<run_name>-<job number>``, grouped (unless ``group`` is given) by its
    launch: ``<sweep or experiment option, or "multirun">/<sweep folder name>``. A single run
    keeps ``run_name`` and is grouped by ``group``, else by its experiment option, else not.
    """
    choices = hydra_cfg.runtime.choices if hydra_cfg is not None else {}
    label = choices.get("sweep") or choices.get("experiment")
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return run_name, group or label
    launch = f"{label or 'multirun'}/{Path(hydra_cfg.sweep.dir).name}"
    return f"{run_name}-{hydra_cfg.job.num}", group or launch


# ------------------------------------------------------------------------------------ logger
class LeashWandbLogger(WandbLogger):
    """Lightning's WandbLogger, carrying on offline when an online run cannot start (no
    network, server down, credentials refused): W&B never fails a job for want of a network."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Lightning always passes `anonymous` (None), which recent wandb versions warn about.
        self._wandb_init.pop("anonymous", None)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        try:
            return super().experiment
        except Exception as error:  # whatever the network or the server raised
            if self._wandb_init.get("mode") in ("offline", "disabled"):
                raise
            log.warning("W&B could not start online (%s): logging offline instead", error)
            self._wandb_init["mode"] = "offline"
            return super().experiment


def wandb_logger(
    run_name: str,
    save_dir: str,
    project: str = "leash",
    group: str | None = None,
    mode: str = "auto",
    config_file: str | None = None,
    init_timeout: float = 30.0,
    finish_timeout: float = 120.0,
    resume: bool = True,
    **kwargs: Any,
) -> LeashWandbLogger:
    """The W&B logger of one job (see ``conf/logger/wandb.yaml`` for the arguments); extra
    keyword arguments (``entity``, ``tags``, ``notes``, ...) go to ``wandb.init``.

    A run that resumes from its checkpoint (``resume``, as in ``TrainConfig``) reopens the W&B
    run it started, whose id it kept in ``<save_dir>/wandb_run_id``.
    """
    import wandb

    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    name, group = run_naming(run_name, group, hydra_cfg)
    config = None
    if config_file is not None and Path(config_file).exists():
        config = flat_config(config_file)
    elif config_file is not None:
        log.warning("no %s: the run's config is not logged to W&B", config_file)
    settings = wandb.Settings(init_timeout=init_timeout, finish_timeout=finish_timeout)
    run_id, resuming = wandb_run_id(save_dir, resume)
    return LeashWandbLogger(
        id=run_id,
        resume="allow" if resuming else None,
        name=name,
        save_dir=save_dir,
        project=project,
        group=group,
        mode=select_mode() if mode == "auto" else mode,
        config=config,
        settings=settings,
        **kwargs,
    )


def wandb_run_id(save_dir: str, resume: bool) -> tuple[str, bool]:
    """This job's W&B run id and whether it reopens a run: the kept id when the job resumes
    from a checkpoint, else a new one (kept for a later resume)."""
    path = Path(save_dir) / "wandb_run_id"
    if resume_checkpoint(save_dir, resume) is not None and path.exists():
        return path.read_text().strip(), True
    run_id = uuid.uuid4().hex[:12]
    if rank_zero_only.rank == 0:  # the process that owns the W&B run
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, run_id)
    return run_id, False


# ------------------------------------------------------------------------------------ finish
def exit_code(error: BaseException) -> int:
    """The process exit status an exception stands for (``SystemExit`` carries its own)."""
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else int(error.code is not None)
    return 1


def finish_wandb(code: int = 0) -> None:
    """Finish the active W&B run, if any, with exit status ``code`` (non-zero: failed).

    A job that never imported wandb has no run, so wandb is not imported here. A failure while
    finishing is logged, never raised: it must not hide the job's own result or error.
    """
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    try:
        wandb.finish(exit_code=code)
    except Exception as error:  # wandb's own trouble; the offline files stay on disk
        log.warning("could not finish the W&B run: %s", error)


@contextmanager
def finishing_wandb() -> Iterator[None]:
    """Run a job's body; then finish its W&B run: exit code 0 on success, the error's code
    (1 for an exception) when the body raises, the error then propagating unchanged."""
    try:
        yield
    except BaseException as error:
        finish_wandb(exit_code(error))
        raise
    finish_wandb(0)
