"""``hub appset generate FILE`` and ``hub app diff -f FILE`` on hostile YAML: exit 2, one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hub.cli import main

HOSTILE = [
    ("name: !!float clu", "line 4, column 9: the value tagged !!float is not a valid float"),
    ('name: !!timestamp "zz"', "line 4, column 9: the value tagged !!timestamp is not a valid"),
    ("name: !!float", "line 4, column 9: the value tagged !!float is not a valid float"),
    ("name: !!int zz", "line 4, column 9: the value tagged !!int is not a valid int"),
    ("name: " + "[" * 5000, "nesting is deeper than 100 levels"),
]
IDS = ["float", "timestamp", "empty-float", "int", "deep"]


def hub(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["--home", str(tmp_path / "home"), *args],
        env={"HUB_MASTER_KEY": None, "HUB_HOME": None},
        catch_exceptions=False,
    )


def _one_error_line(run: Result, path: Path, detail: str) -> None:
    assert run.exit_code == 2, run.output
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert str(path) in lines[0] and detail in lines[0]
    assert "Traceback" not in run.output


@pytest.mark.parametrize(("bad", "detail"), HOSTILE, ids=IDS)
def test_appset_generate_on_a_hostile_file_exits_2_naming_the_file(
    tmp_path: Path, bad: str, detail: str
) -> None:
    path = tmp_path / "appset.yaml"
    path.write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata:\n"
        f"  {bad}\nspec:\n  generators: [{{list: {{elements: []}}}}]\n  template: {{}}\n"
    )
    _one_error_line(hub(tmp_path, "appset", "generate", str(path)), path, detail)


@pytest.mark.parametrize(("bad", "detail"), HOSTILE, ids=IDS)
def test_app_diff_on_a_hostile_file_exits_2_naming_the_file(
    tmp_path: Path, bad: str, detail: str
) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n"
        f"  {bad}\nspec:\n  source: {{repoURL: r}}\n  destination: {{name: c}}\n"
    )
    _one_error_line(hub(tmp_path, "app", "diff", "-f", str(path)), path, detail)
