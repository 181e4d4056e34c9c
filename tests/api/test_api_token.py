"""The API token file: made once, 0600, reused, refused when others can read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hub.api.token import load_or_create_token, read_token, token_matches, token_path
from hub.errors import HubError


def test_the_first_serve_makes_a_private_token_and_later_ones_reuse_it(tmp_path: Path) -> None:
    assert read_token(tmp_path) is None
    first = load_or_create_token(tmp_path)
    assert len(first) >= 32
    assert stat.S_IMODE(token_path(tmp_path).stat().st_mode) == 0o600
    assert load_or_create_token(tmp_path) == first
    assert read_token(tmp_path) == first


def test_an_explicit_token_wins_and_is_not_written(tmp_path: Path) -> None:
    assert load_or_create_token(tmp_path, "given-token-0123456789") == "given-token-0123456789"
    assert not token_path(tmp_path).exists()


@pytest.mark.parametrize("bad", ["short", "has spaces in it 0123456789"])
def test_a_weak_explicit_token_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(HubError, match="at least 16"):
        load_or_create_token(tmp_path, bad)


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create_token(tmp_path)
    os.chmod(token_path(tmp_path), 0o644)
    with pytest.raises(HubError, match="0644") as err:
        read_token(tmp_path)
    assert token_path(tmp_path).read_text().strip() not in str(err.value)


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer right-token-0123456789", True),
        ("bearer right-token-0123456789", True),
        ("Bearer right-token-012345678", False),
        ("Bearer right-token-0123456789x", False),
        ("Basic right-token-0123456789", False),
        ("right-token-0123456789", False),
        ("", False),
        (None, False),
    ],
)
def test_only_the_exact_bearer_token_matches(header: str | None, ok: bool) -> None:
    assert token_matches("right-token-0123456789", header) is ok
