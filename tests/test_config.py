"""The schema: every config composes, ranges and enums are enforced, errors name the key."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from leash.config import ConfigError, DPOConfig, register_configs, validate
from leash.pipeline.compose import register_sweeps
from leash.resources import conf_dir, sweeps_dir

EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
SWEEPS = sorted(p.stem for p in sweeps_dir().glob("*.yaml") if not p.stem.startswith("wandb_"))


@pytest.fixture
def composer(tmp_path):
    """Compose `train` with overrides, with paths pointing into tmp_path (no Hydra run dir)."""
    register_configs()
    register_sweeps()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):

        def _compose(*overrides: str):
            cfg = compose("train", overrides=list(overrides))
            with open_dict(cfg):
                cfg.paths.output_dir = str(tmp_path / "run")
                cfg.paths.cache_dir = str(tmp_path / "cache")
            return cfg

        yield _compose
    GlobalHydra.instance().clear()


def _instantiate_objects(cfg) -> None:
    """Instantiate everything `cli.py` instantiates: callbacks, loggers, the Trainer."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.callbacks or {}).values()]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.logger or {}).values()]
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.update(accelerator="cpu", devices=1, strategy="auto", precision="32-true")
    hydra.utils.instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False)


def test_default_config_is_valid(composer):
    typed = validate(composer())
    assert typed.algo.name == "sft"
    assert typed.data.source.value == "task"
    _instantiate_objects(composer())


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(composer, experiment):
    cfg = composer(f"experiment={experiment}")
    validate(cfg)
    _instantiate_objects(cfg)


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_sweep_composes_and_instantiates(composer, sweep):
    cfg = composer(f"sweep={sweep}")
    validate(cfg)
    _instantiate_objects(cfg)


@pytest.mark.parametrize("group", ["algo", "model", "data", "trainer", "logger", "peft", "debug"])
def test_every_group_option_composes(composer, group):
    for option in sorted(p.stem for p in (conf_dir() / group).glob("*.yaml")):
        overrides = [f"{group}={option}"]
        if option == "files":
            overrides.append("data.path=/tmp/does-not-matter.jsonl")
        if option == "lora":
            overrides.append("algo=sft")
        if group == "trainer" and option in ("fsdp", "deepspeed_zero3"):
            # The support matrix rejects every algorithm there (see test_support_matrix.py).
            with pytest.raises(ConfigError, match="trainer.strategy: algo=sft cannot run on"):
                validate(composer(*overrides))
            continue
        validate(composer(*overrides))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("algo.lr=-1", "algo.lr"),
        ("algo.lr=0", "algo.lr"),
        ("algo.max_steps=0", "algo.max_steps"),
        ("data.max_length=0", "data.max_length"),
        ("data.max_prompt_length=64", "data.max_prompt_length"),  # >= max_length (16)
        ("data.task.label_temperature=-0.5", "data.task.label_temperature"),
        ("model.tiny.num_heads=3", "model.tiny.num_heads"),  # does not divide 64
        ("peft.dropout=1.5", "peft.dropout"),
        ("algo.lr=inf", "algo.lr"),
    ],
)
def test_out_of_range_values_name_their_key(composer, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(composer(override))


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("data.bad_rows=sometimes", "skip, error"),
        ("data.truncation=middle", "truncate_prompt_left, drop"),
        ("data.source=ftp", "task, hub, files, disk"),
        ("model.tiny.arch=rwkv", "gpt2, llama"),
    ],
)
def test_unknown_enum_values_list_the_allowed_ones(composer, override, allowed):
    with pytest.raises(Exception) as failure:
        composer(override)
    message = f"{failure.value} {failure.value.__cause__}"  # Hydra chains the detail as cause
    assert override.split("=")[0] in message
    assert allowed in message


def test_unknown_key_fails(composer):
    with pytest.raises(Exception, match="algo.bogus|bogus"):
        composer("algo.bogus=1")


def test_dpo_schema_checks_beta_and_adapter_reference():
    from leash.config import check_ranges

    assert check_ranges(DPOConfig(beta=0.1)) == []
    assert any("beta" in p for p in check_ranges(DPOConfig(beta=0.0)))
    assert any("label_smoothing" in p for p in check_ranges(DPOConfig(label_smoothing=0.5)))


def test_sweep_group_reads_the_top_level_sweeps_folder():
    assert sweeps_dir() == Path(__file__).resolve().parents[1] / "sweeps"
    assert "sft_lr" in SWEEPS
