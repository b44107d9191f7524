"""`leash compare`'s stage board: states, the running stage's bar, ETA, and failures."""

from __future__ import annotations

import io
import json

from rich.console import Console

from leash.pipeline import board as board_module
from leash.pipeline.board import StageBoard, StageRow, clock, eta_seconds


def render(board: StageBoard) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(board)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def test_the_eta_is_the_steps_left_at_the_rate_since_the_first_timed_step():
    progress = {"step": 30, "max_steps": 100, "timed_from_step": 10, "elapsed_s": 4.0}
    assert eta_seconds(progress) == 70 * 4.0 / 20
    assert eta_seconds({**progress, "step": 10}) is None  # no timed step yet
    assert [clock(s) for s in (0, 59.6, 61, 3725)] == ["0:00", "1:00", "1:01", "1:02:05"]


def test_the_board_shows_each_stage_state_and_the_running_stage_progress(tmp_path, monkeypatch):
    rows = [StageRow(name, tmp_path / name) for name in ("sft", "ppo", "dpo")]
    for row in rows:
        row.run_dir.mkdir()
    board = StageBoard(rows, "leash compare: 3 stages")
    monkeypatch.setattr(board_module.time, "perf_counter", lambda: 100.0)
    board.start(rows[0])
    board.finish(rows[0], ok=True, seconds=12.4)
    board.start(rows[1])
    assert render(board)[2].split() == ["▸", "ppo", "starting", "(0:00)"]
    (rows[1].run_dir / "progress.json").write_text(json.dumps({
        "step": 30, "max_steps": 60, "timed_from_step": 10, "elapsed_s": 10.0,
        "metric": "train/objective/rlhf_reward", "value": 0.4321, "finished": False}))
    lines = render(board)
    assert lines[0] == "leash compare: 3 stages"
    assert lines[1].split() == ["✓", "sft", "12", "s"]
    assert lines[2].startswith("▸ ppo") and lines[2].endswith("step 30/60  0:15 left  reward 0.432")
    assert lines[3].split() == ["·", "dpo"]
    assert max(len(line) for line in lines) <= 100
    board.finish(rows[1], ok=False, seconds=3.0)
    assert render(board)[2].split() == ["✗", "ppo", "3", "s"]


def test_a_failed_stage_shows_the_end_of_its_log_and_where_it_is(tmp_path):
    from leash.pipeline.compare import FAILED_LOG_LINES, _show_failures

    row = StageRow("dpo, seed 1", tmp_path, state="failed", seconds=2.0)
    (tmp_path / "console.log").write_text("".join(f"line {i}\n" for i in range(40)))
    out = io.StringIO()
    _show_failures(Console(file=out, width=400, color_system=None), [row])
    printed = out.getvalue().splitlines()
    assert str(tmp_path / "console.log") in printed[0] and "dpo, seed 1 failed" in printed[0]
    assert printed[1:] == [f"line {i}" for i in range(40 - FAILED_LOG_LINES, 40)]
