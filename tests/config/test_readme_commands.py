"""Every `leash ...` command in the READMEs parses and composes, and errors quoted there are real.

Commands come from fenced code blocks and inline code of README.md and experiments/README.md.
`leash train` commands are composed and validated as `leash train ... --cfg job` would be, and
nothing is trained; `leash compare` commands are parsed and each stage's overrides composed as
compare routes them; `leash report` commands are parsed. Commands with `<placeholders>` are
templates and only counted.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from composing import composer, inside_a_job, job_error
from leash.pipeline.compare import NEEDS_GOLD_REWARD, OPTIONAL_STAGES, STAGES, pop_seeds
from leash.pipeline.compare import _parser as compare_parser
from leash.pipeline.overrides import route_by_prefix

REPO = Path(__file__).resolve().parents[2]
READMES = [REPO / "README.md", REPO / "experiments" / "README.md"]
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`(leash(?: [^`]*)?)`")
QUOTED_ERROR = re.compile(r"`(leash [^`]+)` →\s+`([^`]+)`")
"""A command followed by the error it prints: ``leash train algo.lr=-1` → `algo.lr: ...``."""


def readme_commands(text: str) -> list[str]:
    """The `leash` commands of a Markdown text: lines of code blocks, and inline code."""
    blocks = FENCED.findall(text)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    pieces = [p.strip() for line in lines for p in line.split("&&")]
    pieces += INLINE.findall(FENCED.sub("", text))
    return [p for p in pieces if p == "leash" or p.startswith("leash ")]


COMMANDS = list(dict.fromkeys(c for readme in READMES for c in readme_commands(readme.read_text())))
TEMPLATES = [c for c in COMMANDS if re.search(r"<[^>]+>", c)]
RUNNABLE = [c for c in COMMANDS if c not in TEMPLATES]
QUOTED_ERRORS = dict(QUOTED_ERROR.findall(REPO.joinpath("README.md").read_text()))

HYDRA_FLAGS = {"-m", "--multirun", "--help", "-h", "--resolve"}
"""Flags of `leash train` that change what is done with the config, not the config."""


@pytest.fixture(scope="module")
def compose_job(tmp_path_factory):
    with composer(tmp_path_factory.mktemp("readme") / "run") as compose:
        yield compose


def train_overrides(args: list[str]) -> list[str]:
    """The overrides of a `leash train` argument list (`--cfg job` and flags dropped)."""
    overrides, skip = [], False
    for arg in args:
        if not skip and arg not in HYDRA_FLAGS and arg != "--cfg":
            overrides.append(arg)
        skip = arg == "--cfg"
    return overrides


def problems_of(command: str, compose_job) -> list[str]:
    """What stops a README command before it would load anything (empty: it would run)."""
    args = shlex.split(command, comments=True)[1:]
    subcommand = args[0] if args else "train"
    if subcommand == "report":
        from leash.report.main import _parser as report_parser

        report_parser().parse_args(args[1:])
        return []
    if subcommand == "compare":
        return _compare_problems(compare_parser().parse_args(args[1:]), compose_job)
    overrides = train_overrides(args[1:] if subcommand == "train" else args)
    return [error for error in [job_error(compose_job, overrides)] if error]


def _compare_problems(parsed, compose_job) -> list[str]:
    """Each stage's overrides, routed as `leash compare` routes them, composed and validated."""
    seeds, overrides = pop_seeds(parsed.overrides)
    routed = route_by_prefix([*overrides, *(["seed=0"] if seeds else [])],
                             STAGES + OPTIONAL_STAGES)
    task_data = compose_job(routed["sft"]).data.source == "task"
    stages = [s for s in parsed.stages.split(",") if task_data or s not in NEEDS_GOLD_REWARD]
    errors = {s: job_error(compose_job, [f"algo={s}", *routed[s]]) for s in stages}
    return [f"stage {stage}: {error}" for stage, error in errors.items() if error]


def test_the_readmes_hold_the_commands_they_document():
    assert len(RUNNABLE) >= 15, RUNNABLE
    assert "leash compare" in RUNNABLE
    assert "leash train -m sweep=dpo_beta_lr" in RUNNABLE  # experiments/README.md
    assert any("upstream.sft=" in c for c in RUNNABLE)
    assert set(QUOTED_ERRORS) == {"leash train algo.lr=-1", "leash train data.bad_rows=sometimes"}
    assert len(TEMPLATES) <= 3, TEMPLATES


@pytest.mark.parametrize("command", [c for c in RUNNABLE if c not in QUOTED_ERRORS])
def test_readme_command_composes(compose_job, command):
    assert problems_of(command, compose_job) == []


@pytest.mark.parametrize(("command", "quoted"), QUOTED_ERRORS.items())
def test_readme_quotes_the_error_leash_prints(compose_job, command, quoted):
    problems = problems_of(command, compose_job)
    assert problems
    assert " ".join(quoted.split()) in " ".join(" ".join(problems).split())


def test_upstream_sft_overrides_reach_the_sft_stage(compose_job):
    """The README's `upstream.sft` example: the SFT stage this DPO run builds trains at 3e-3."""
    from leash.config import validate
    from leash.pipeline.stages import Stages

    overrides = ["algo=dpo", 'upstream.sft=["algo.lr=3e-3"]']
    typed = validate(compose_job(overrides))
    assert typed.upstream.sft == ["algo.lr=3e-3"]
    with inside_a_job():  # the stage composes its config inside this job, as in a real run
        stage, stage_overrides = Stages(typed, overrides)._sft_upstream
    assert stage.cfg.algo.name == "sft"
    assert stage.cfg.algo.lr == 3e-3
    assert stage_overrides[-1] == "algo.lr=3e-3"
