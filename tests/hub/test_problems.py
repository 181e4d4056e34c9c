"""Sources and sets in error are problems of the fleet status: shown and failable."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.cli.status import status_table
from hub.rollups import FailOn, Problem, build_status, fail_on

PROBLEMS = (
    Problem(kind="source", name="root", message="apps/web.yaml@1a2b3c4d5e6f: held ..."),
    Problem(kind="appset", name="web", message="placeholder left in every name"),
)


def status(problems: tuple[Problem, ...] = PROBLEMS) -> dict[str, object]:
    return build_status(
        apps=(), clusters=(), connections={}, last_syncs={}, problems=problems,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    ).to_json()  # fmt: skip


def test_problems_are_in_the_json_and_fail_on_error() -> None:
    doc = status()
    assert doc["problems"] == [p.to_json() for p in PROBLEMS]
    snapshot = build_status(apps=(), clusters=(), connections={}, last_syncs={}, problems=PROBLEMS)
    assert fail_on(snapshot, [FailOn.ERROR]) == [
        "source root is in error: apps/web.yaml@1a2b3c4d5e6f: held ...",
        "appset web is in error: placeholder left in every name",
    ]
    assert fail_on(snapshot, [FailOn.DEGRADED]) == []


def test_the_table_ends_with_a_problems_section_only_when_there_are_problems() -> None:
    table = status_table(status(), source="api")
    assert "problems: 2" in table
    assert "  source root: apps/web.yaml@1a2b3c4d5e6f" in table
    assert "  ApplicationSet web: placeholder" in table
    assert all(len(line) < 80 for line in table.splitlines())
    assert "problems" not in status_table(status(()), source="api")
