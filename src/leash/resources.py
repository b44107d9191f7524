"""Where the Hydra config tree and the sweeps are, in a clone or in an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _find(name_in_repo: str, name_in_wheel: str) -> Path:
    """The folder at the repository top (editable install) or its copy inside the package."""
    candidates = (_PACKAGE_DIR.parents[1] / name_in_repo, _PACKAGE_DIR / name_in_wheel)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"leash cannot find its {name_in_repo}/ folder; looked in {candidates}")


def conf_dir() -> Path:
    """The Hydra config tree (``conf/``)."""
    return _find("conf", "_conf")


def sweeps_dir() -> Path:
    """The multirun sweep configs (``sweeps/``), offered as the ``sweep`` config group."""
    return _find("sweeps", "_sweeps")

