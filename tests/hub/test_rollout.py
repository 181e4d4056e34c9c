"""Progressive sync decisions (hub.rollout): step membership, maxUpdate, statuses, halting."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generators.errors import GeneratorError
from generators.spec import Strategy, parse_appset
from hub.apps import AppRecord, AppStore, never_started
from hub.rollout import (
    Asking,
    Control,
    Member,
    max_update_count,
    member_of,
    plan_rollout,
    rollout_events,
    rollout_of,
)
from hub.store import Store

NEW, OLD = "b" * 40, "a" * 40


def strategy(*steps: dict[str, Any]) -> Strategy:
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "s"},
        "spec": {
            "generators": [{"list": {"elements": []}}],
            "template": {},
            "strategy": {"type": "RollingSync", "rollingSync": {"steps": list(steps)}},
        },
    }
    parsed = parse_appset(doc, source="s.yaml").spec.strategy
    assert parsed is not None
    return parsed


def env_step(*envs: str, max_update: int | str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {
        "matchExpressions": [{"key": "env", "operator": "In", "values": list(envs)}]
    }
    if max_update is not None:
        step["maxUpdate"] = max_update
    return step


THREE = strategy(env_step("dev"), env_step("staging"), env_step("prod"))


def app(name: str, env: str | None, state: str = "new", **over: Any) -> Member:
    """``state``: done (Synced+Healthy at NEW), new (OutOfSync, NEW not synced yet),
    progressing (synced NEW, not healthy yet), degraded (synced NEW, Degraded)."""
    sync, health, synced = {
        "done": ("Synced", "Healthy", NEW),
        "new": ("OutOfSync", "Healthy", OLD),
        "progressing": ("Synced", "Progressing", NEW),
        "degraded": ("Synced", "Degraded", NEW),
    }[state]
    fields: dict[str, Any] = {
        "name": name,
        "labels": {} if env is None else {"env": env},
        "source_key": "repo",
        "sync": sync,
        "health": health,
        "desired_sha": NEW,
        "synced_sha": synced,
    }
    return Member(**{**fields, **over})


def statuses(rollout: Any) -> dict[str, str]:
    return {a.app: a.status for a in rollout.apps}


def released(rollout: Any) -> set[str]:
    """The apps newly released (Pending); apps in flight keep their go (see below)."""
    return {a.app for a in rollout.apps if a.go and a.status == "Pending"}


@pytest.mark.parametrize(
    ("apps", "current", "go", "expected"),
    [
        # A fresh release: only dev may go; the later steps wait.
        (
            [app("d", "dev"), app("s", "staging"), app("p", "prod")],
            1,
            {"d"},
            {"d": "Pending", "s": "Waiting", "p": "Waiting"},
        ),
        # dev synced but not healthy yet: staging still waits.
        (
            [app("d", "dev", "progressing"), app("s", "staging"), app("p", "prod")],
            1,
            set(),
            {"d": "Progressing", "s": "Waiting", "p": "Waiting"},
        ),
        # dev done: staging is released.
        (
            [app("d", "dev", "done"), app("s", "staging"), app("p", "prod")],
            2,
            {"s"},
            {"d": "Healthy", "s": "Pending", "p": "Waiting"},
        ),
        # Everything done.
        (
            [app("d", "dev", "done"), app("s", "staging", "done"), app("p", "prod", "done")],
            None,
            set(),
            {"d": "Healthy", "s": "Healthy", "p": "Healthy"},
        ),
        # An app no step selects is never released, and blocks nothing.
        (
            [app("d", "dev", "done"), app("x", "qa"), app("s", "staging")],
            2,
            {"s"},
            {"d": "Healthy", "x": "Waiting", "s": "Pending"},
        ),
        # A step with no app is skipped.
        (
            [app("d", "dev", "done"), app("p", "prod")],
            3,
            {"p"},
            {"d": "Healthy", "p": "Pending"},
        ),
    ],
)
def test_steps_go_in_order(
    apps: list[Member], current: int | None, go: set[str], expected: dict[str, str]
) -> None:
    rollout = plan_rollout(THREE, apps)
    assert rollout.current_step == current
    assert released(rollout) == go
    assert statuses(rollout) == expected


def test_an_app_belongs_to_the_first_step_that_selects_it() -> None:
    s = strategy(env_step("dev"), env_step("dev", "prod"))
    rollout = plan_rollout(s, [app("d", "dev"), app("p", "prod")])
    assert {a.app: a.step for a in rollout.apps} == {"d": 1, "p": 2}
    assert released(rollout) == {"d"}


def test_a_degraded_app_halts_the_set_and_is_named() -> None:
    apps = [app("d1", "dev", "degraded"), app("d2", "dev"), app("s", "staging")]
    rollout = plan_rollout(THREE, apps)
    assert rollout.halted_by == "d1"
    assert "d1 is Degraded" in rollout.message
    # d2 does not get the broken release; staging keeps its revision.
    assert released(rollout) == set()
    assert rollout.hold_reason("d1") is None  # d1 itself may roll forward to a fix
    assert rollout.hold_reason("d2") is not None
    assert statuses(rollout)["d2"] == "Waiting" and "halted" in rollout.apps[1].message


def test_a_failed_sync_of_the_new_revision_halts_the_set() -> None:
    failed = app("d1", "dev", "new", op_phase="Failed", op_revision=NEW)
    rollout = plan_rollout(THREE, [failed, app("d2", "dev"), app("s", "staging")])
    assert rollout.halted_by == "d1"
    assert "failed" in rollout.message
    # A failure of an older revision is history, not a halt.
    older = app("d1", "dev", "new", op_phase="Failed", op_revision=OLD)
    assert plan_rollout(THREE, [older, app("s", "staging")]).halted_by is None


@pytest.mark.parametrize(
    ("max_update", "states", "go"),
    [
        (1, ["new", "new", "new"], {"a"}),  # name order decides: workers agree
        (1, ["progressing", "new", "new"], set()),  # one in flight: nothing more
        (1, ["done", "new", "new"], {"b"}),
        (2, ["progressing", "new", "new"], {"b"}),
        ("50%", ["new", "new", "new"], {"a"}),  # 1.5 rounds down
        ("10%", ["new", "new", "new"], {"a"}),  # at least 1
        (0, ["new", "new", "new"], set()),  # a manual gate
        ("0%", ["new", "new", "new"], set()),
        (None, ["new", "new", "new"], {"a", "b", "c"}),  # default 100%
    ],
)
def test_max_update_caps_a_step(
    max_update: int | str | None, states: list[str], go: set[str]
) -> None:
    s = strategy(env_step("dev", max_update=max_update))
    apps = [app(n, "dev", st_) for n, st_ in zip("abc", states, strict=True)]
    assert released(plan_rollout(s, apps)) == go


def test_pause_holds_everything_and_promote_opens_a_gate() -> None:
    s = strategy(env_step("dev", max_update=0), env_step("prod"))
    apps = [app("d", "dev"), app("p", "prod")]
    assert released(plan_rollout(s, apps)) == set()
    assert released(plan_rollout(s, apps, Control(promoted_step=1))) == {"d"}
    paused = plan_rollout(s, apps, Control(paused=True, promoted_step=1))
    assert released(paused) == set() and paused.paused
    assert "paused" in paused.message


def test_the_asking_app_knows_a_revision_the_store_does_not_yet() -> None:
    # The store still says dev is done at OLD; staging's worker saw NEW first.
    stale = [
        app("d", "dev", "done", desired_sha=OLD, synced_sha=OLD),
        app("s", "staging", "done", desired_sha=OLD, synced_sha=OLD),
    ]
    rollout = plan_rollout(THREE, stale, asking=Asking(name="s", revision=NEW, sync="OutOfSync"))
    assert rollout.current_step == 1
    assert rollout.hold_reason("s") is not None
    # An app tracking another repo is judged on its own revision.
    other = [stale[0], app("s", "staging", "done", source_key="other")]
    asked = plan_rollout(THREE, other, asking=Asking(name="d", revision=NEW, sync="OutOfSync"))
    assert asked.hold_reason("d") is None


def test_a_step_that_has_not_seen_the_new_commit_is_not_done_while_a_later_one_has() -> None:
    # prod's worker refreshed first: dev and staging still want OLD and run it, prod wants
    # NEW. The store loop must not read dev and staging as done and leap to step 3.
    seen_by_prod_only = [
        app("d", "dev", "done", desired_sha=OLD, synced_sha=OLD),
        app("s", "staging", "done", desired_sha=OLD, synced_sha=OLD),
        app("p", "prod", "new"),
    ]
    rollout = plan_rollout(THREE, seen_by_prod_only)
    assert rollout.current_step == 1
    assert rollout.hold_reason("p") is not None
    assert "d, p, s refreshing" in rollout.message
    # Once every worker has refreshed, the rollout starts at step 1 as usual.
    agreed = plan_rollout(THREE, [app("d", "dev"), app("s", "staging"), app("p", "prod")])
    assert agreed.current_step == 1 and released(agreed) == {"d"}
    assert "refreshing" not in agreed.message
    # Sets tracking two sources (two repos) are judged each on its own revision.
    two = [
        app("d", "dev", "done", desired_sha=OLD, synced_sha=OLD, source_key="x"),
        app("p", "prod"),
    ]
    assert plan_rollout(THREE, two).current_step == 3


@given(
    percent=st.integers(min_value=0, max_value=300), size=st.integers(min_value=0, max_value=500)
)
def test_max_update_percent_rounds_down_but_releases_at_least_one(percent: int, size: int) -> None:
    count = max_update_count(f"{percent}%", size)
    if percent == 0:
        assert count == 0
    else:
        assert count == max(1, size * percent // 100)
        assert count >= 1


@given(st.one_of(st.integers(max_value=-1), st.text(max_size=6), st.floats(), st.booleans()))
def test_a_bad_max_update_is_an_error_naming_the_field(value: Any) -> None:
    if isinstance(value, str) and re.fullmatch(r"[0-9]+%", value):
        return  # a valid percentage
    with pytest.raises(GeneratorError, match=r"steps\[0\]\.maxUpdate"):
        strategy(env_step("dev", max_update=value))


def test_a_rolling_sync_needs_steps_and_known_operators() -> None:
    with pytest.raises(GeneratorError, match="at least one step"):
        strategy()
    with pytest.raises(GeneratorError, match=r"matchExpressions\[0\]\.operator"):
        strategy({"matchExpressions": [{"key": "env", "operator": "Equals", "values": ["a"]}]})


def test_pause_and_promotion_are_stored_and_outlive_the_connection(tmp_path: Path) -> None:
    # A restarted `hub serve` reads the same rows (hub.db), so the operator's hand holds.
    store = Store.open(tmp_path / "hub.db", create=True)
    try:
        apps = AppStore(store)
        assert apps.rollout_control("s") == (False, None)
        apps.set_rollout_control("s", paused=True, promoted_step=2)
        apps.set_rollout_status("s", {"currentStep": "2"})
    finally:
        store.close()
    reopened = Store.open(tmp_path / "hub.db")
    try:
        apps = AppStore(reopened)
        assert apps.rollout_control("s") == (True, 2)
        assert apps.rollout_status("s") == {"currentStep": "2"}
        apps.set_rollout_status("s", {"currentStep": None})  # keeps the control
        assert apps.rollout_control("s") == (True, 2)
    finally:
        reopened.close()


def test_an_app_in_flight_keeps_its_go_unless_paused_or_halted() -> None:
    # Synced at the new revision, not healthy yet, then drifting: its heal is not held.
    s = strategy(env_step("dev", max_update=1))
    flying = [app("a", "dev", "progressing"), app("b", "dev")]
    asked = Asking(name="a", revision=NEW, sync="OutOfSync")
    assert plan_rollout(s, flying, asking=asked).hold_reason("a") is None
    assert plan_rollout(s, flying, asking=asked).hold_reason("b") is not None
    paused = plan_rollout(s, flying, Control(paused=True), asking=asked)
    assert paused.hold_reason("a") is not None


def _status(step: str | None, halted: str | None = None) -> dict[str, Any]:
    return {"currentStep": step, "steps": 3, "haltedBy": halted, "message": "m"}


def _moves(old: dict[str, Any] | None, new: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(e.type, e.step) for e in rollout_events(old, new, revision="abc")]


def test_rollout_events_report_each_new_step_a_halt_and_the_end() -> None:
    assert _moves(None, _status("1")) == [("step-started", 1)]
    assert _moves(_status("1"), _status("1")) == []
    assert _moves(_status("1"), _status("2")) == [("step-started", 2)]
    assert _moves(_status("3"), _status(None)) == [("completed", None)]
    assert _moves(None, _status(None)) == []  # first seen already done: nothing moved
    # a new revision starts over at step 1 after a finished rollout
    assert _moves(_status(None), _status("1")) == [("step-started", 1)]
    halt = rollout_events(_status("1"), _status("1", "dev-guestbook"), revision="abc")
    assert [(e.type, e.step, e.halted_by, e.revision) for e in halt] == [
        ("halted", 1, "dev-guestbook", "abc")
    ]
    # still halted by the same app at the same step: no second event
    assert _moves(_status("1", "dev-guestbook"), _status("1", "dev-guestbook")) == []
    assert _moves(_status("1", "dev-guestbook"), _status("1")) == []
    # steps passed over between two looks are reported, in order
    assert _moves(_status(None), _status("3")) == [("step-started", n) for n in (1, 2, 3)]
    assert _moves(_status("1"), _status("3")) == [("step-started", 2), ("step-started", 3)]
    assert _moves(_status("3"), _status("2")) == [("step-started", 1), ("step-started", 2)]


def test_a_sync_the_hub_stopped_before_it_started_neither_takes_a_slot_nor_halts() -> None:
    # A hub killed between the worker's running state and the engine's record left app a
    # Running; the next hub rewrote it as never started (``Hub.record_interrupted``). Read
    # from the store, it must leave maxUpdate's slot free and must not halt the set as a
    # failed sync of the new revision would: a is released again and retried.
    s = strategy(env_step("dev", max_update=1))
    running = {
        "phase": "Running",
        "trigger": "automated",
        "startedAt": T0.isoformat(),
        "syncResult": {"revision": NEW},
        "message": "running",
    }
    stale = member_of(_record("a", operation_state=running))
    assert stale.op_phase == "Running"
    assert released(plan_rollout(s, [stale, app("b", "dev")])) == set()  # the slot it took

    rewritten = member_of(_record("a", operation_state=never_started(running, T0)))
    rollout = plan_rollout(s, [rewritten, app("b", "dev")])
    assert rollout.halted_by is None
    assert released(rollout) == {"a"}
    # An Error of the new revision the engine did begin still halts the set.
    failed = {**never_started(running, T0), "interrupted": None}
    assert plan_rollout(s, [member_of(_record("a", operation_state=failed))]).halted_by == "a"


T0 = datetime(2026, 12, 3, tzinfo=UTC)


def _record(name: str, *, operation_state: dict[str, Any]) -> AppRecord:
    """A stored dev Application at OLD wanting NEW (OutOfSync)."""
    return AppRecord(
        name=name, appset="s", source=None, file="", cluster="east", dest_server="",
        dest_name="east", namespace="web", project="default", spec={"source": {}},
        labels={"env": "dev"}, annotations={}, finalizers=(), generation=1,
        desired_revision="main", desired_sha=NEW, synced_sha=OLD, sync_status="OutOfSync",
        health_status="Healthy", conditions=(), operation_state=operation_state, created_at=T0,
        updated_at=T0, reconciled_at=None, deletion=None, deletion_reason=None,
        deletion_requested_at=None,
    )  # fmt: skip


def test_the_stored_strategy_follows_the_set_s_manifest_as_it_changes(tmp_path: Path) -> None:
    """The worker's rollout check reads the set's manifest text and parses a version once:
    a set that gains, changes or drops its RollingSync is seen at the next read."""
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "s"},
        "spec": {"generators": [{"list": {"elements": []}}], "template": {}},
    }

    def rolling(*steps: dict[str, Any]) -> dict[str, Any]:
        return {"type": "RollingSync", "rollingSync": {"steps": list(steps)}}

    with Store.open(tmp_path / "hub.db", create=True) as store:
        apps = AppStore(store)

        def stored(spec_strategy: dict[str, Any] | None) -> int | None:
            manifest = {**doc, "spec": {**doc["spec"]}}
            if spec_strategy is not None:
                manifest["spec"]["strategy"] = spec_strategy
            with apps.transaction() as txn:
                txn.put_appset(name="s", source="root", file="s.yaml", manifest=manifest, sha="1")
            rollout = rollout_of(apps, "s")
            return None if rollout is None else rollout.steps

        assert rollout_of(apps, "absent") is None
        assert stored(None) is None
        assert stored(rolling(env_step("dev"), env_step("prod"))) == 2
        assert stored(rolling(env_step("dev"), env_step("staging"), env_step("prod"))) == 3
        assert stored(rolling(env_step("dev"), env_step("prod"))) == 2  # an earlier version
        assert stored({"type": "AllAtOnce"}) is None
        assert stored(None) is None
