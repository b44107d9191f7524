"""Model cards of saved models, and `hub.push` against a fake of huggingface_hub's upload calls.

Nothing here touches the network: every HfApi method a push calls is replaced by a recorder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import yaml

from leash.config import SFTConfig, TrainConfig, validate
from leash.pipeline import recipes
from leash.pipeline.compose import compose_train
from leash.pipeline.model_card import CARD_FILE, render_model_card, write_model_card

RECORD = {
    "metrics": {"eval/gold_reward": 0.5, "eval/exact_kl": 1.25, "eval/kl": None,
                "val/loss": 0.6931, "train/loss": 0.123},
    "runtime": {"versions": {"leash": "9.9.9", "torch": "8.8.8"}},
}
"""A metrics.json payload: held-out metrics, a non-finite one, a training one, the versions."""


def config(tmp_path: Path, *overrides: str) -> TrainConfig:
    """The validated config of ``leash train <overrides>`` with its folders under tmp_path."""
    return validate(compose_train([
        *overrides, f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'c'}"
    ]))  # fmt: skip


def split_card(card: str) -> tuple[dict, str]:
    """The card's YAML front matter, parsed, and its Markdown body."""
    assert card.startswith("---\n")
    header, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


def test_dpo_card_has_the_front_matter_hyperparameters_metrics_and_command(tmp_path):
    overrides = ["algo=dpo", "algo.beta=0.3"]
    card = render_model_card(config(tmp_path, *overrides), RECORD, overrides, "/cache/sft/abc")
    meta, body = split_card(card)
    # A tiny built-in model is no Hub model, and the built-in task no Hub data set.
    assert meta == {"library_name": "transformers", "pipeline_tag": "text-generation",
                    "tags": ["leash", "dpo"]}
    for row in ("| `algo.beta` | 0.3 |", "| `algo.loss` | sigmoid |",
                "| `algo.reference` | copy |", "| `algo.lr` |", "| `algo.max_steps` |"):
        assert row in body, row
    assert "| `eval/gold_reward` | 0.5 |" in body
    assert "| `eval/exact_kl` | 1.25 |" in body
    assert "| `eval/kl` | non-finite |" in body
    assert "| `val/loss` | 0.6931 |" in body
    assert "train/loss" not in body  # held-out metrics only
    assert "leash train algo=dpo algo.beta=0.3\n" in body
    assert "leash 9.9.9, torch 8.8.8" in body
    assert "`/cache/sft/abc`" in body and "random weights" in body
    assert "AutoModelForCausalLM.from_pretrained" in body
    assert "algo.kl_coef" not in body  # no PPO field on a DPO card


def test_ppo_card_names_the_hub_model_and_data_and_the_online_hyperparameters(tmp_path):
    overrides = ["algo=ppo", "model=gpt2", "data=hh_rlhf", "algo.kl_coef=0.2",
                 "algo.samples_per_prompt=2"]
    card = render_model_card(config(tmp_path, *overrides), RECORD, overrides, "/cache/sft/abc")
    meta, body = split_card(card)
    assert meta["base_model"] == "gpt2"
    assert meta["datasets"] == ["Anthropic/hh-rlhf"]
    assert meta["tags"] == ["leash", "ppo"]
    for row in ("| `algo.kl_coef` | 0.2 |", "| `algo.advantage` | gae |",
                "| `algo.samples_per_prompt` | 2 |", "| `algo.reward` | learned |",
                "| `algo.gamma` | 1.0 |", "| `algo.lam` | 0.95 |"):
        assert row in body, row
    assert "algo.beta" not in body
    assert "(https://huggingface.co/datasets/Anthropic/hh-rlhf)" in body


def test_a_critic_free_card_lists_no_critic_fields(tmp_path):
    card = render_model_card(config(tmp_path, "algo=rloo"), RECORD, ["algo=rloo"], "sft")
    _, body = split_card(card)
    assert "| `algo.advantage` | rloo |" in body
    for field in ("algo.gamma", "algo.lam", "algo.critic_lr"):
        assert field not in body, field


def test_reward_model_card_is_a_text_classifier_loaded_as_one(tmp_path):
    record = {"metrics": {"val/accuracy": 0.75, "val/loss": 0.5}}
    cfg = config(tmp_path, "algo=reward", "algo.margin=0.5")
    meta, body = split_card(render_model_card(cfg, record, ["algo=reward"], "sft"))
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["tags"] == ["leash", "reward", "reward-model"]
    assert "| `algo.margin` | 0.5 |" in body and "| `val/accuracy` | 0.75 |" in body
    assert "AutoModelForSequenceClassification.from_pretrained" in body
    assert "Bradley–Terry" in body
    assert "versions not recorded" in body  # this record has no runtime block


def test_base_model_is_the_hub_sft_policy_and_never_a_local_path(tmp_path):
    hub_sft = config(tmp_path, "algo=dpo", "upstream.sft_policy=org/sft-policy")
    meta, _ = split_card(render_model_card(hub_sft, {}, [], "org/sft-policy"))
    assert meta["base_model"] == "org/sft-policy"
    local = config(tmp_path, "model.name_or_path=./models/mine")
    meta, body = split_card(render_model_card(local, {}, [], "./models/mine"))
    assert "base_model" not in meta
    assert "the local model `./models/mine`" in body


def test_the_card_is_written_into_the_folder_with_the_runs_metrics(tmp_path):
    cfg = config(tmp_path, "algo=dpo")
    run = Path(cfg.paths.output_dir)
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(RECORD))
    folder = run / "policy"
    folder.mkdir()
    path = write_model_card(cfg, folder, ["algo=dpo", "seed=3"], "sft")
    assert path == folder / CARD_FILE
    card = path.read_text()
    assert "| `eval/gold_reward` | 0.5 |" in card
    assert "leash train algo=dpo seed=3" in card
    assert [p.name for p in folder.iterdir()] == [CARD_FILE]  # no temporary file left


def test_without_metrics_json_the_card_says_so(tmp_path):
    cfg = config(tmp_path, "algo=sft")
    folder = tmp_path / "policy"
    folder.mkdir()
    card = write_model_card(cfg, folder, [], "base").read_text()
    assert "The run recorded no held-out metrics." in card
    assert "leash train\n" in card


# ------------------------------------------------------------------------------------ hub.push
@pytest.fixture
def hub_calls(monkeypatch) -> list:
    """Replace every HfApi method a push calls with a recorder: ``(name, args, kwargs)``."""
    calls: list = []

    def recorder(name, result=None):
        def method(self, *args, **kwargs):
            calls.append((name, args, kwargs))
            return result
        return method

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", recorder("create_repo"))
    monkeypatch.setattr(huggingface_hub.HfApi, "create_branch", recorder("create_branch"))
    commit = SimpleNamespace(commit_url="https://huggingface.co/me/x/commit/0")
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", recorder("upload_folder", commit))
    return calls


def run_with_saved_folder(monkeypatch, tmp_path, overrides, rank_zero=True) -> Path:
    """run_recipe with an SFT recipe that only 'saves' a folder, as a finished run would."""
    folder = tmp_path / "run" / "policy"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")

    def fake_recipe(cfg, trainer, stages):
        return folder

    monkeypatch.setitem(recipes.RECIPES, SFTConfig, fake_recipe)
    trainer = SimpleNamespace(is_global_zero=rank_zero)
    recipes.run_recipe(config(tmp_path, *overrides), trainer, overrides)
    return folder


def test_push_creates_the_repo_and_uploads_the_saved_folder(monkeypatch, tmp_path, hub_calls):
    folder = run_with_saved_folder(monkeypatch, tmp_path, ["hub.push=true", "hub.repo_id=me/x"])
    assert [name for name, _, _ in hub_calls] == ["create_repo", "upload_folder"]
    _, args, kwargs = hub_calls[0]
    assert args == ("me/x",) and kwargs == {"private": True, "exist_ok": True}
    _, _, kwargs = hub_calls[1]
    assert kwargs["repo_id"] == "me/x"
    assert Path(kwargs["folder_path"]) == folder
    assert kwargs["revision"] is None


def test_push_to_a_branch_creates_it_first(monkeypatch, tmp_path, hub_calls):
    run_with_saved_folder(monkeypatch, tmp_path, [
        "hub.push=true", "hub.repo_id=me/x", "hub.revision=beta-0.3", "hub.private=false"
    ])  # fmt: skip
    assert [name for name, _, _ in hub_calls] == ["create_repo", "create_branch", "upload_folder"]
    assert hub_calls[0][2]["private"] is False
    assert hub_calls[1][1:] == (("me/x",), {"branch": "beta-0.3", "exist_ok": True})
    assert hub_calls[2][2]["revision"] == "beta-0.3"


@pytest.mark.parametrize(
    ("overrides", "rank_zero"),
    [([], True), (["hub.repo_id=me/x"], True), (["hub.push=true", "hub.repo_id=me/x"], False)],
    ids=["push off", "repo id without push", "not rank 0"],
)
def test_no_push_unless_asked_on_rank_0(monkeypatch, tmp_path, hub_calls, overrides, rank_zero):
    run_with_saved_folder(monkeypatch, tmp_path, overrides, rank_zero)
    assert hub_calls == []


def test_a_failed_push_is_one_error_line_and_the_model_stays(monkeypatch, tmp_path, caplog):
    def refuse(self, *args, **kwargs):
        raise RuntimeError("401 Unauthorized")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", refuse)
    with caplog.at_level(logging.ERROR, logger="leash.pipeline.hub"):
        folder = run_with_saved_folder(
            monkeypatch, tmp_path, ["hub.push=true", "hub.repo_id=me/x"]
        )
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "401 Unauthorized" in errors[0] and str(folder) in errors[0]
    assert f"hf upload me/x {folder}" in errors[0]
    assert (folder / "model.safetensors").read_bytes() == b"weights"
