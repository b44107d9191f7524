"""``hub.push=true``: upload the run's saved model folder to the Hugging Face Hub when it ends.

Rank 0 pushes once the recipe has returned, so every local file (model, card, metrics, cache
entry) is already written: a push that fails (no token, no network, someone else's repository)
is one error line naming the folder, which stays where it is, and the run keeps its status.
``huggingface_hub`` reads the token ``hf auth login`` saved (or ``HF_TOKEN``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from leash.config import TrainConfig
from leash.config.train import HubConfig

log = logging.getLogger(__name__)


def push_folder(folder: Path, hub: HubConfig, message: str) -> str:
    """Create ``hub.repo_id`` if missing (``hub.private``) and its ``hub.revision`` branch, upload
    ``folder`` in one commit, and return the commit's URL; errors are huggingface_hub's."""
    from huggingface_hub import HfApi  # only a run that pushes pays for the import

    api = HfApi()
    api.create_repo(hub.repo_id, private=hub.private, exist_ok=True)
    if hub.revision is not None:
        api.create_branch(hub.repo_id, branch=hub.revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=hub.repo_id, folder_path=folder, revision=hub.revision, commit_message=message
    )
    return commit.commit_url


def push_saved_model(cfg: TrainConfig, folder: Path | None) -> bool:
    """Push ``folder`` when ``hub.push`` asks (call on rank 0 only); whether it was pushed."""
    hub = cfg.hub
    if not hub.push or folder is None:
        return False
    try:
        url = push_folder(folder, hub, f"leash: {cfg.run_name} (algo={cfg.algo.name})")
    except Exception as error:  # noqa: BLE001 - whatever failed, the model is safe on disk
        log.error(
            "hub.push: pushing %s to %s failed (%s: %s); the model is saved there, push it "
            "later with `hf upload %s %s`",
            folder, hub.repo_id, type(error).__name__, error, hub.repo_id, folder,
        )  # fmt: skip
        return False
    log.info("hub.push: pushed %s to %s", folder, url)
    return True
