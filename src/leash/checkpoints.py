"""Where a run keeps its checkpoints, and which one a restarted run resumes from.

One rule for every reader (the recipe's ``ckpt_path``, the CSV logger that continues its file,
the W&B logger that reopens its run): a run resumes when ``resume`` is on and its folder holds
``checkpoints/last.ckpt``. That file is only ever complete: Lightning writes checkpoints to a
temporary file and moves it into place (``lightning.fabric.utilities.cloud_io._atomic_save``).
"""

from __future__ import annotations

from pathlib import Path


def last_checkpoint_path(output_dir: str | Path) -> Path:
    """The run folder's newest checkpoint, whether or not it exists yet."""
    return Path(output_dir) / "checkpoints" / "last.ckpt"


def resume_checkpoint(output_dir: str | Path, resume: bool) -> Path | None:
    """The checkpoint a run in ``output_dir`` resumes from; None when it starts afresh."""
    path = last_checkpoint_path(output_dir)
    return path if resume and path.exists() else None
