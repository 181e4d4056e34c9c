"""``render_table``: lines that do not fit shrink the widest columns, never crash."""

from __future__ import annotations

from hub.cli.output import render_table


def test_a_too_wide_row_without_preferred_columns_shrinks_the_widest() -> None:
    text = render_table(["NAME", "URL"], [["a", "https://" + "x" * 120]], width=40)
    assert all(len(line) <= 40 for line in text.splitlines())
    assert text.splitlines()[1].endswith("~")


def test_preferred_columns_shrink_first_down_to_their_floor() -> None:
    text = render_table(["NAME", "URL"], [["n" * 30, "u" * 30]], width=50, shrink_first=[1])
    name, url = text.splitlines()[1].split()
    assert len(url) == 20 and url.endswith("~")
    assert len(name) == 28
