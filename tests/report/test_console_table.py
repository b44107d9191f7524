"""The console's table keeps the columns that matter most and fits in 100 characters."""

from __future__ import annotations

from rich.table import Table

from leash.report.console import fit_table, width_of


def table_of(names) -> Table:
    table = Table()
    for name in names:
        table.add_column(name)
    table.add_row(*("x" * 12 for _ in names))
    return table


def test_columns_are_dropped_by_priority_until_the_table_fits():
    names = ["method", "status", "length", "gold reward", "wall time", "exact KL", "win s.e."]
    width = width_of(table_of(["method", "status", "gold reward", "exact KL"]))
    table, left_out = fit_table(table_of, names, width=width)
    kept = [column.header for column in table.columns]
    assert kept == ["method", "status", "gold reward", "exact KL"]  # in their own order
    assert left_out == ["length", "wall time", "win s.e."]  # unranked ones go first


def test_a_table_that_fits_keeps_every_column_and_two_columns_always_stay():
    names = ["method", "gold reward"]
    assert fit_table(table_of, names, width=100)[1] == []
    table, left_out = fit_table(table_of, ["method", "status", "exact KL"], width=5)
    assert [c.header for c in table.columns] == ["method", "status"]
    assert left_out == ["exact KL"]
