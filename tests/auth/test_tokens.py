"""API tokens: stored hashed, shown once, expiring and revocable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.auth.tokens import (
    TokenError,
    add_user,
    authenticate,
    create_token,
    list_tokens,
    parse_duration,
    remove_user,
    revoke_token,
)
from hub.errors import HubUsageError
from hub.home import init_home, open_store
from hub.store import Store
from tests.pg import stored_bytes

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path, db_location: Path | str) -> Store:
    init_home(
        tmp_path / "home", env={}, database=None if isinstance(db_location, Path) else db_location
    )
    return open_store(tmp_path / "home")


def test_a_token_authenticates_as_its_user_and_only_its_hash_is_stored(
    store: Store, tmp_path: Path, db_location: Path | str, request: pytest.FixtureRequest
) -> None:
    add_user(store, "alice")
    token, info = create_token(store, subject="alice", kind="user", description="ci")
    principal = authenticate(store, token)
    assert (principal.subject, principal.token_id) == ("alice", info.id)
    secret = token.split("_", 2)[2]
    # Every byte the home holds (database, WAL, files), while the store is still open.
    raw = b"".join(p.read_bytes() for p in (tmp_path / "home").rglob("*") if p.is_file())
    if not isinstance(db_location, Path):  # and every byte of the PostgreSQL database
        raw += stored_bytes(db_location, request.getfixturevalue("postgres_server"))
    assert info.id.encode() in raw
    assert secret.encode() not in raw


def test_a_wrong_secret_a_made_up_token_and_garbage_are_refused(store: Store) -> None:
    add_user(store, "alice")
    token, _ = create_token(store, subject="alice", kind="user")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (forged, "hub_000000000000_" + "A" * 43, "hub_x", "not-a-token"):
        with pytest.raises(TokenError):
            authenticate(store, bad)


def test_an_expired_token_is_refused(store: Store) -> None:
    token, info = create_token(
        store, subject="proj:a:r", kind="project-role", expires_in=timedelta(hours=1), now=T0
    )
    assert authenticate(store, token, now=T0 + timedelta(minutes=59)).subject == "proj:a:r"
    with pytest.raises(TokenError, match=f"token {info.id} expired"):
        authenticate(store, token, now=T0 + timedelta(hours=1))
    assert list_tokens(store)[0].state(T0 + timedelta(hours=2)) == "expired"


def test_a_revoked_token_stops_working_and_removing_a_user_revokes_its_tokens(
    store: Store,
) -> None:
    add_user(store, "alice")
    first, info = create_token(store, subject="alice", kind="user")
    second, _ = create_token(store, subject="alice", kind="user")
    revoke_token(store, info.id)
    with pytest.raises(TokenError, match="revoked"):
        authenticate(store, first)
    assert authenticate(store, second).subject == "alice"
    assert remove_user(store, "alice") == 1
    with pytest.raises(TokenError, match="revoked"):
        authenticate(store, second)
    with pytest.raises(HubUsageError, match="no token with id"):
        revoke_token(store, "nope")


def test_last_use_is_recorded(store: Store) -> None:
    token, _ = create_token(store, subject="proj:a:r", kind="project-role")
    authenticate(store, token, now=T0)
    assert list_tokens(store)[0].last_used_at == T0


def test_a_user_token_needs_the_user_and_names_are_checked(store: Store) -> None:
    with pytest.raises(HubUsageError, match="hub user add bob"):
        create_token(store, subject="bob", kind="user")
    for bad in ("role:admin", "Alice", "a b", ""):
        with pytest.raises(HubUsageError):
            add_user(store, bad)
    add_user(store, "alice")
    with pytest.raises(HubUsageError, match="already exists"):
        add_user(store, "alice")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("1d12h", 129600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "1x", "0h", "-1h", "1h 2m"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(HubUsageError, match="--expires-in"):
        parse_duration(text)


@given(st.text(max_size=120))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
def test_any_presented_text_is_refused_with_a_token_error(store: Store, text: str) -> None:
    with pytest.raises(TokenError):
        authenticate(store, text)
