"""The support matrix: every rejected cell fails before loading with a message naming the
algorithm, the strategy and a supported alternative; every strategy config composes with every
algorithm family; the README's table is the matrix's own rendering.

DeepSpeed is not installed here (it builds its ops on first use, on a CUDA machine): the
DeepSpeed configs are composed and validated, not instantiated, and the strategy node's
conversion to plain dicts is checked with a stand-in target.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

from composing import composer, job_error
from leash.config import ALGO_SCHEMAS, ConfigError, TrainerConfig, validate
from leash.config.support import (
    COLUMNS,
    MATRIX_PRECISIONS,
    RULES,
    STRATEGY_COLUMNS,
    check_support,
    deepspeed_clip,
    family_of,
    render_matrix,
    rule_for,
    strategy_column,
    supported,
)

README = Path(__file__).resolve().parents[2] / "README.md"
CELLS = list(itertools.product(ALGO_SCHEMAS, COLUMNS, MATRIX_PRECISIONS))
REJECTED = [cell for cell in CELLS if not supported(family_of(cell[0]), cell[1], cell[2])]


@pytest.fixture(scope="module")
def compose_job(tmp_path_factory):
    with composer(tmp_path_factory.mktemp("run")) as compose:
        yield compose


def overrides(algo: str, column: str, precision: str) -> list[str]:
    """`leash train` overrides selecting a cell."""
    return [f"algo={algo}", f"trainer={COLUMNS[column].trainer}", f"trainer.precision={precision}"]


def alternatives(message: str) -> list[str]:
    """The strategy columns a message offers instead (`use trainer=a or trainer=b`)."""
    offered = re.search(r"; use (trainer=\w+(?: or trainer=\w+)*)$", message)
    assert offered, message
    configs = re.findall(r"trainer=(\w+)", offered.group(1))
    return [next(c.name for c in STRATEGY_COLUMNS if name in c.configs) for name in configs]


def test_the_matrix_rejects_cells_of_every_strategy_it_cannot_run():
    assert len(CELLS) == len(ALGO_SCHEMAS) * 5 * 3
    assert {column for _, column, _ in REJECTED} == {"fsdp", "deepspeed_zero3"}
    assert {algo for algo, column, _ in REJECTED if column == "fsdp"} == set(ALGO_SCHEMAS)
    for algo in ALGO_SCHEMAS:  # one device, DDP and ZeRO-2 run everything
        assert all(supported(family_of(algo), c, p) for c in ("single", "ddp", "deepspeed_zero2")
                   for p in MATRIX_PRECISIONS)  # fmt: skip


@pytest.mark.parametrize("cell", REJECTED, ids=["-".join(c) for c in REJECTED])
def test_a_rejected_cell_fails_before_loading_naming_algorithm_strategy_alternative(
    compose_job, cell
):
    algo, column, precision = cell
    error = job_error(compose_job, overrides(algo, column, precision))
    assert error is not None and error.startswith("ConfigError"), error
    message = next(line.strip() for line in error.splitlines() if "trainer.strategy:" in line)
    assert f"algo={algo} " in message
    assert f"trainer={COLUMNS[column].trainer})" in message and COLUMNS[column].label in message
    offered = alternatives(message)
    assert offered and all(supported(family_of(algo), alt, precision) for alt in offered)
    assert rule_for(family_of(algo), column).why in message


SUPPORTED_CONFIGS = [
    (algo, trainer)
    for algo in ("sft", "reward", "dpo", "simpo", "online_dpo", "iterative_dpo", "ppo", "grpo")
    for trainer in ("cpu", "gpu", "ddp", "ddp_cpu", "deepspeed_zero2")
]


@pytest.mark.parametrize("algo,trainer", SUPPORTED_CONFIGS)
def test_every_strategy_config_composes_and_validates_with_every_family(
    compose_job, algo, trainer
):
    column = next(c.name for c in STRATEGY_COLUMNS if trainer in c.configs)
    cfg = compose_job([f"algo={algo}", f"trainer={trainer}"])
    validate(cfg)
    resolved = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert strategy_column(resolved.get("strategy", "auto")) == column


def test_deepspeed_configs_clip_inside_deepspeed_at_the_algorithms_norm(compose_job):
    for algo, norm in (("ppo", 1.0), ("dpo", 1.0), ("sft", None)):
        extra = [f"algo.max_grad_norm={'null' if norm is None else 0.5}"] if algo == "sft" else []
        cfg = compose_job([f"algo={algo}", "trainer=deepspeed_zero2", *extra])
        strategy = OmegaConf.to_container(cfg.trainer.strategy, resolve=True)
        assert strategy["config"]["gradient_clipping"] == (norm or 0.0)
        assert strategy["config"]["zero_optimization"] == {"stage": 2}
    cfg = compose_job(["algo=sft", "trainer=deepspeed_zero3"])
    assert OmegaConf.to_container(cfg.trainer.strategy, resolve=True)["config"][
        "zero_optimization"] == {"stage": 3}  # fmt: skip
    # PPO clips through DeepSpeed, never through the Trainer (manual optimisation forbids it).
    assert compose_job(["algo=ppo", "trainer=deepspeed_zero2"]).trainer.gradient_clip_val is None


def test_the_strategy_node_reaches_deepspeed_as_plain_dicts(compose_job):
    """Hydra converts the `config` mapping to a dict (DeepSpeed rejects a DictConfig)."""
    node = compose_job(["trainer=deepspeed_zero2"]).trainer.strategy
    stand_in = OmegaConf.merge(node, {"_target_": "builtins.dict"})
    made = hydra.utils.instantiate(stand_in)
    assert type(made["config"]) is dict and type(made["config"]["zero_optimization"]) is dict


def test_deepspeed_clip_is_zero_when_clipping_is_off():
    assert deepspeed_clip(ALGO_SCHEMAS["ppo"](max_grad_norm=0.5)) == 0.5
    assert deepspeed_clip(ALGO_SCHEMAS["sft"](max_grad_norm=None)) == 0.0


def test_cuda_only_strategies_are_rejected_on_cpu(compose_job):
    error = job_error(compose_job, ["trainer=deepspeed_zero2", "trainer.accelerator=cpu"])
    assert "trainer.accelerator: Lightning's DeepSpeed ZeRO-2 strategy runs on CUDA GPUs" in error
    assert "use trainer=ddp_cpu" in error
    assert job_error(compose_job, ["trainer=ddp_cpu", "algo=ppo"]) is None


@pytest.mark.parametrize(
    "strategy,column",
    [
        ("auto", "single"), ("single_device", "single"), ("ddp", "ddp"), ("DDP", "ddp"),
        ("ddp_spawn_find_unused_parameters_true", "ddp"), ("fsdp", "fsdp"),
        ("fsdp_cpu_offload", "fsdp"), ("deepspeed", "deepspeed_zero2"),
        ("deepspeed_stage_1", "deepspeed_zero2"), ("deepspeed_stage_2_offload", "deepspeed_zero2"),
        ("deepspeed_stage_3", "deepspeed_zero3"),
        ("deepspeed_stage_3_offload_nvme", "deepspeed_zero3"),
        ("xla", None), ("single_tpu", None),
        ({"_target_": "lightning.pytorch.strategies.DeepSpeedStrategy"}, "deepspeed_zero2"),
        ({"_target_": "lightning.pytorch.strategies.DeepSpeedStrategy", "stage": 3},
         "deepspeed_zero3"),
        ({"_target_": "lightning.pytorch.strategies.DeepSpeedStrategy", "stage": 2,
          "config": {"zero_optimization": {"stage": 3}}}, "deepspeed_zero3"),  # config wins
        ({"_target_": "lightning.pytorch.strategies.FSDPStrategy", "cpu_offload": True}, "fsdp"),
        ({"_target_": "lightning.pytorch.strategies.DDPStrategy"}, "ddp"),
        ({"_target_": "my.own.Strategy"}, None),
    ],
)  # fmt: skip
def test_strategy_values_fall_in_their_column(strategy, column):
    assert strategy_column(strategy) == column


def test_a_deepspeed_config_file_gives_its_stage(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    target = "lightning.pytorch.strategies.DeepSpeedStrategy"
    assert strategy_column({"_target_": target, "config": str(path)}) == "deepspeed_zero3"
    problems = check_support("dpo", TrainerConfig(strategy={"_target_": target,
                                                             "config": str(path)}))  # fmt: skip
    assert len(problems) == 1 and "algo=dpo cannot run on DeepSpeed ZeRO-3" in problems[0]


def test_outside_the_matrix_nothing_is_checked():
    assert check_support("ppo", TrainerConfig(strategy="xla", accelerator="cpu")) == []
    assert check_support("ppo", TrainerConfig(strategy="ddp", precision="16-mixed")) == []


def test_the_rendered_table_has_a_row_per_family_and_a_reason_per_rule():
    table = render_matrix()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 5 and "`ppo`, `ppo_gt`, `rloo`, `grpo`, `reinforce`" in rows[-1]
    ppo_cells = [cell.strip() for cell in rows[-1].split("|")[2:-1]]
    assert ppo_cells == ["yes", "yes", "no (1)", "yes", "no (4)"]
    assert "each `trainer.precision` of the matrix (`32-true`, `bf16-mixed`, `bf16-true`)" in table
    for number, rule in enumerate(RULES, start=1):
        assert f"\n{number}. {rule.why[0].upper()}{rule.why[1:]}. Use `trainer=" in table


def test_the_readme_shows_the_matrix_generated_from_this_code():
    text = README.read_text()
    block = re.search(r"<!-- generated: support_matrix -->\n(.*?)<!-- /generated -->", text, re.S)
    assert block and block.group(1) == render_matrix()


def test_a_rejection_is_a_config_error_naming_the_key(compose_job):
    with pytest.raises(ConfigError, match=r"trainer\.strategy: algo=grpo cannot run on FSDP"):
        validate(compose_job(overrides("grpo", "fsdp", "32-true")))
