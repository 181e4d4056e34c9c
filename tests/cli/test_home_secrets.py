"""Secrets at rest and in messages: the home is the user's alone, and credentials inside Git
URLs never reach an error, a log line or an API answer (issue 11 item 14)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import logs
from hub.logs import scrub, setup_logging
from hub.repos import RepoCache, RepoError
from tests.clusters.cli_support import Hub

PASSWORD = "s3cret-pa55word-xyz"
URL = f"https://deploy:{PASSWORD}@127.0.0.1:9/platform/fleet.git"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ---------------------------------------------------------------- the home's permissions


def test_init_tightens_an_existing_home_to_the_user(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "home")
    hub.ok("init")
    home = hub.home
    assert mode(home) == 0o700 and mode(home / "hub.db") == 0o600
    os.chmod(home, 0o755)
    for name in ("hub.db", "master.key"):
        os.chmod(home / name, 0o644)
    (home / "notes").write_text("x")
    os.chmod(home / "notes", 0o664)
    run = hub.ok("init")
    assert f"permissions tightened: {home} 0755 -> 0700" in run.stdout
    assert f"permissions tightened: {home / 'hub.db'} 0644 -> 0600" in run.stdout
    assert "already initialised; nothing else changed" in run.stdout
    assert mode(home) == 0o700
    assert all(mode(p) == 0o600 for p in home.iterdir() if p.is_file())
    assert "nothing changed" in hub.ok("init").stdout  # a second run has nothing to do


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to hand the home to another uid")
def test_init_refuses_a_home_of_another_user_with_the_command_to_run(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "home")
    hub.ok("init")
    os.chmod(hub.home, 0o755)
    os.chown(hub.home, 54321, 54321)
    run = hub("init")
    assert run.exit_code == 2
    assert "owned by uid 54321" in run.stderr
    assert f"chmod 700 {hub.home} && chmod 600 {hub.home}/*" in run.stderr
    assert mode(hub.home) == 0o755


# ---------------------------------------------------------------- URL credentials


def test_clone_errors_never_show_the_url_password(tmp_path: Path) -> None:
    with RepoCache(tmp_path / "cache") as cache, pytest.raises(RepoError) as caught:
        cache.resolve(URL, "main")
    message = str(caught.value)
    assert PASSWORD not in message and "deploy:" not in message
    assert "https://***@127.0.0.1:9/platform/fleet.git" in message


def test_log_lines_and_cli_errors_hide_url_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(1)
    logging.getLogger("hub.test").warning("fetching %s failed", URL)
    assert PASSWORD not in capsys.readouterr().err
    hub = Hub(tmp_path / "home")
    hub.ok("init")
    run = hub("-vv", "source", "add", "fleet", "--repo", URL, "--path", "apps")
    assert PASSWORD not in run.output


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (URL, "https://***@127.0.0.1:9/platform/fleet.git"),
        ("https://ghp_tokentokentoken@github.com/o/r", "https://***@github.com/o/r"),
        ("clone 'https://u:p@ss@h/x' failed", "clone 'https://***@h/x' failed"),
        ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("mail me: ops@example.com", "mail me: ops@example.com"),
    ],
)
def test_url_credentials_are_replaced(text: str, shown: str) -> None:
    assert logs.redact_url_credentials(text) == shown
    assert scrub(text) == shown


URL_TEXT = st.characters(
    blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs"), blacklist_characters="/?#@'\"<>"
)


@given(st.text(), st.text(alphabet=URL_TEXT, min_size=1))
def test_no_password_survives_in_any_surrounding_text(around: str, password: str) -> None:
    text = f"{around} https://user:{password}X@host/p {around}"
    out = logs.redact_url_credentials(text)
    assert f"user:{password}X@" not in out
