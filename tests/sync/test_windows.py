"""AppProject sync windows: parsing, matching and Argo CD's allow/deny rules at a given time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.apps import AppRecord, AppStore, DesiredApp, ProjectRecord
from hub.store import Store
from hub.sync.diff import SyncStatus
from hub.sync.model import Automated
from hub.sync.windows import (
    ProjectWindows,
    SyncWindowError,
    WindowTarget,
    WindowVerdict,
    glob_match,
    manual_refusal,
    parse_sync_windows,
    project_windows,
    sync_verdict,
)
from hub.worker import LastOperation, decide_auto_sync, window_target, window_verdict_of

APP = WindowTarget(
    app="east-web", namespace="web", server="https://east.example:6443", cluster_names=("east",)
)
# Wednesday 2026-06-10 12:30 UTC
NOON = datetime(2026, 6, 10, 12, 30, tzinfo=UTC)


def windows(*raw: dict[str, Any], project: str = "prod") -> ProjectWindows:
    return project_windows(
        {"spec": {"syncWindows": list(raw)}}, project=project, file="projects/prod.yaml"
    )


def deny(schedule: str, duration: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "deny", "schedule": schedule, "duration": duration,
            "applications": ["*"], **extra}  # fmt: skip


def allow(schedule: str, duration: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "allow", "schedule": schedule, "duration": duration,
            "applications": ["*"], **extra}  # fmt: skip


# ---------------------------------------------------------------- the rules, table-driven

RULES: list[tuple[str, list[dict[str, Any]], bool, bool]] = [
    # (case, windows, automated allowed, manual allowed) at NOON
    ("no windows", [], True, True),
    ("deny active", [deny("0 12 * * *", "1h")], False, False),
    ("deny active, manualSync", [deny("0 12 * * *", "1h", manualSync=True)], False, True),
    ("deny over", [deny("0 11 * * *", "1h")], True, True),
    ("deny not yet", [deny("0 13 * * *", "1h")], True, True),
    ("deny end is exclusive", [deny("30 11 * * *", "1h")], True, True),
    ("deny start is inclusive", [deny("30 12 * * *", "1m")], False, False),
    ("allow active", [allow("0 12 * * *", "1h")], True, True),
    ("allow inactive", [allow("0 22 * * *", "2h")], False, False),
    ("allow inactive, manualSync", [allow("0 22 * * *", "2h", manualSync=True)], False, True),
    (
        "one of two allows active",
        [allow("0 22 * * *", "2h"), allow("0 12 * * *", "1h")],
        True,
        True,
    ),
    (
        "manual needs every inactive allow to say manualSync",
        [allow("0 22 * * *", "2h", manualSync=True), allow("0 2 * * *", "1h")],
        False,
        False,
    ),
    (
        "deny wins over an active allow",
        [allow("0 12 * * *", "1h"), deny("0 12 * * *", "1h")],
        False,
        False,
    ),
    (
        "manual needs every active deny to say manualSync",
        [deny("0 12 * * *", "1h", manualSync=True), deny("0 0 * * *", "24h")],
        False,
        False,
    ),
    (
        "every active deny says manualSync",
        [deny("0 12 * * *", "1h", manualSync=True), deny("0 0 * * *", "24h", manualSync=True)],
        False,
        True,
    ),
    ("weekday field: Wednesday", [deny("0 0 * * WED", "24h")], False, False),
    ("weekday field: Tuesday over", [deny("0 0 * * 2", "24h")], True, True),
    ("'?' reads as '*' (robfig)", [deny("0 12 ? * *", "1h")], False, False),
    # robfig: '*/2' restricts the day, so day-of-month OR day-of-week (Wednesday the 10th)
    ("'*/2' days or Wednesday", [deny("0 0 */2 * WED", "24h")], False, False),
    ("'*/2' days and any weekday", [deny("0 0 */2 * *", "24h")], True, True),
    ("window of another app", [deny("0 12 * * *", "1h", applications=["west-*"])], True, True),
    (
        "allow of another app does not hold",
        [allow("0 22 * * *", "1h", applications=["x"])],
        True,
        True,
    ),
]


@pytest.mark.parametrize(
    ("raw", "automated", "manual"),
    [pytest.param(w, a, m, id=case) for case, w, a, m in RULES],
)
def test_argo_cd_window_rules(raw: list[dict[str, Any]], automated: bool, manual: bool) -> None:
    verdict = sync_verdict(windows(*raw), APP, NOON)
    assert (verdict.automated, verdict.manual) == (automated, manual)
    assert (manual_refusal(verdict, APP.app) is None) is manual
    if not automated:
        assert verdict.reason and verdict.until is not None and verdict.wait_s > 0


def test_deny_verdict_names_the_window_and_until_when() -> None:
    verdict = sync_verdict(windows(deny("0 12 * * *", "1h")), APP, NOON)
    assert verdict.reason == (
        "deny window syncWindows[0] (schedule '0 12 * * *', duration 1h) of project prod is "
        "active until 2026-06-10T13:00:00Z"
    )
    assert verdict.wait_s == 30 * 60
    refusal = manual_refusal(verdict, "east-web")
    assert refusal is not None
    assert refusal.startswith("application east-web: manual sync refused: deny window")
    assert "manualSync: true" in refusal


def test_deny_names_the_window_refusing_manual_syncs_and_holds_until_the_last_ends() -> None:
    verdict = sync_verdict(
        windows(deny("0 0 * * *", "23h", manualSync=True), deny("0 12 * * *", "1h")), APP, NOON
    )
    assert verdict.window is not None and verdict.window.index == 1
    assert verdict.until == datetime(2026, 6, 10, 23, 0, tzinfo=UTC)


def test_back_to_back_occurrences_make_one_window() -> None:
    # daily for 24h: never a gap, so the hold looks as far ahead as the chain limit
    verdict = sync_verdict(windows(deny("0 0 * * *", "24h")), APP, NOON)
    assert verdict.until is not None and verdict.until - NOON > timedelta(days=100)
    assert "is active until at least " in verdict.reason


def test_inactive_allow_waits_until_the_first_window_opens() -> None:
    verdict = sync_verdict(windows(allow("0 22 * * *", "1h"), allow("0 18 * * *", "1h")), APP, NOON)
    assert verdict.until == datetime(2026, 6, 10, 18, 0, tzinfo=UTC)
    assert "opens at 2026-06-10T18:00:00Z" in verdict.reason
    assert "syncWindows[1]" in verdict.reason


def test_overlapping_occurrences_are_chained_to_the_real_end() -> None:
    # every 10 minutes for 1h, only from 12:00 to 12:50: active until 13:50
    verdict = sync_verdict(windows(deny("*/10 12 * * *", "1h")), APP, NOON)
    assert verdict.until == datetime(2026, 6, 10, 13, 50, tzinfo=UTC)


# ---------------------------------------------------------------- matching

MATCHING: list[tuple[str, dict[str, Any], bool]] = [
    ("app glob", {"applications": ["east-*"]}, True),
    ("app glob, other", {"applications": ["west-*"]}, False),
    ("namespace", {"namespaces": ["web"]}, True),
    ("namespace glob, other", {"namespaces": ["kube-*"]}, False),
    ("cluster by server", {"clusters": ["https://east.*"]}, True),
    ("cluster by name", {"clusters": ["east"]}, True),
    ("cluster, other", {"clusters": ["west"]}, False),
    ("question mark and class", {"applications": ["eas?-[vw]eb"]}, True),
    ("braces", {"applications": ["{west,east}-web"]}, True),
    ("any list matches (or)", {"applications": ["nope"], "namespaces": ["web"]}, True),
    (
        "andOperator: every set list must match",
        {"applications": ["nope"], "namespaces": ["web"], "andOperator": True},
        False,
    ),
    (
        "andOperator: all match",
        {"applications": ["east-*"], "clusters": ["east"], "andOperator": True},
        True,
    ),
    ("andOperator: unset lists are ignored", {"namespaces": ["web"], "andOperator": True}, True),
]


@pytest.mark.parametrize(
    ("matchers", "applies"), [pytest.param(m, a, id=case) for case, m, a in MATCHING]
)
def test_which_applications_a_window_applies_to(matchers: dict[str, Any], applies: bool) -> None:
    raw = {"kind": "deny", "schedule": "0 12 * * *", "duration": "1h", **matchers}
    verdict = sync_verdict(windows(raw), APP, NOON)
    assert verdict.automated is not applies


def test_globs_match_like_argo_cd_without_separators() -> None:
    assert glob_match("*", "https://a/b")
    assert glob_match("https://*", "https://10.0.0.1:6443/x")
    assert not glob_match("web", "web-2")
    assert glob_match("[!x]eb", "web")


# ---------------------------------------------------------------- time zones and DST

NY = "America/New_York"


@pytest.mark.parametrize(
    ("now", "active"),
    [
        (datetime(2026, 6, 10, 13, 30, tzinfo=UTC), False),  # 09:30 in New York (EDT)
        (datetime(2026, 6, 10, 14, 30, tzinfo=UTC), True),  # 10:30 EDT
        (datetime(2026, 1, 14, 14, 30, tzinfo=UTC), False),  # 09:30 EST
        (datetime(2026, 1, 14, 15, 30, tzinfo=UTC), True),  # 10:30 EST
    ],
)
def test_schedule_is_read_in_the_window_time_zone(now: datetime, active: bool) -> None:
    verdict = sync_verdict(windows(deny("0 10 * * *", "2h", timeZone=NY)), APP, now)
    assert verdict.automated is not active


def test_a_start_in_the_spring_forward_gap_starts_when_the_clock_resumes() -> None:
    # 2026-03-08 02:00 EST jumps to 03:00 EDT: 02:30 does not exist that night.
    window = windows(deny("30 2 * * *", "1h", timeZone=NY))
    resumed = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT
    assert sync_verdict(window, APP, resumed - timedelta(seconds=1)).automated
    held = sync_verdict(window, APP, resumed + timedelta(minutes=10))
    assert not held.automated
    assert held.until == resumed + timedelta(hours=1)  # the duration is elapsed time


def test_duration_over_the_fall_back_hour_is_elapsed_time() -> None:
    # 2026-11-01 at 02:00 EDT clocks go back to 01:00 EST; a 2h window from 00:30 EDT
    # (04:30 UTC) ends at 06:30 UTC, which is 01:30 EST on the wall clock.
    window = windows(deny("30 0 * * *", "2h", timeZone=NY))
    verdict = sync_verdict(window, APP, datetime(2026, 11, 1, 6, 0, tzinfo=UTC))
    assert verdict.until == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert "timeZone America/New_York" in verdict.reason


# ---------------------------------------------------------------- invalid windows fail closed

INVALID: list[tuple[dict[str, Any], str]] = [
    ({**deny("0 12 * * *", "1h"), "kind": "block"}, "syncWindows[0].kind: must be 'allow' or"),
    (deny("0 12 * *", "1h"), "syncWindows[0].schedule: '0 12 * *' is not a 5-field cron"),
    (deny("0 0 12 * * *", "1h"), "is not a 5-field cron"),
    (deny("61 12 * * *", "1h"), "syncWindows[0].schedule: '61 12 * * *': Bad minute"),
    (deny("@daily", "1h"), "is not a 5-field cron"),
    (deny("0 12 * * *", "soon"), "syncWindows[0].duration: cannot parse 'soon'"),
    (deny("0 12 * * *", "0s"), "syncWindows[0].duration: must be positive"),
    ({**deny("0 12 * * *", "1h"), "duration": None}, "syncWindows[0].duration: required"),
    (deny("0 12 * * *", "1h", timeZone="Mars/Olympus"), "timeZone: unknown time zone"),
    (deny("0 12 * * *", "1h", manualSync="yes"), "syncWindows[0].manualSync: expected true"),
    ({"kind": "deny", "schedule": "0 12 * * *", "duration": "1h"}, "set at least one of"),
    (deny("0 12 * * *", "1h", applications="web"), "applications: expected a list"),
    (deny("0 12 * * *", "1h", apps=["x"]), "unknown field(s) apps"),
]


@pytest.mark.parametrize(("raw", "says"), INVALID)
def test_an_invalid_window_holds_every_sync_of_the_project_naming_the_error(
    raw: dict[str, Any], says: str
) -> None:
    project = windows(allow("0 12 * * *", "1h"), raw)
    assert project.error is not None
    assert project.error.startswith("projects/prod.yaml: AppProject prod: spec.syncWindows[1]")
    assert says.replace("[0]", "[1]") in project.error
    verdict = sync_verdict(project, APP, NOON)
    assert (verdict.automated, verdict.manual) == (False, False)
    assert verdict.until is None  # nothing to wait for but a fix
    assert "fail closed" in verdict.reason and project.error in verdict.reason
    refusal = manual_refusal(verdict, "east-web")
    assert refusal is not None and project.error in refusal


def test_sync_windows_must_be_a_list() -> None:
    with pytest.raises(SyncWindowError, match=r"p.yaml: spec.syncWindows: expected a list"):
        parse_sync_windows({"syncWindows": {"kind": "deny"}}, where="p.yaml")
    assert project_windows({"spec": "x"}, project="p", file="f.yaml").error


def test_a_project_without_windows_allows_everything() -> None:
    assert parse_sync_windows(None, where="x") == ()
    assert sync_verdict(project_windows({}, project="p", file=""), APP, NOON).automated


# ---------------------------------------------------------------- fuzz

CRON_ATOMS = st.sampled_from(
    [
        "*",
        "?",
        "0",
        "5",
        "59",
        "60",
        "7",
        "*/5",
        "1-5",
        "5-1",
        "1,2",
        "MON",
        "JAN",
        "L",
        "/",
        "-",
        ",",
        "*/0",
        "",
        "x",
        "31",
        "2#1",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    schedule=st.one_of(
        st.text(max_size=30),
        st.lists(CRON_ATOMS, min_size=0, max_size=7).map(" ".join),
    ),
    duration=st.one_of(st.text(max_size=8), st.sampled_from(["1h", "30m", "1h30m", "-1h", "0"])),
    zone=st.one_of(st.none(), st.sampled_from(["UTC", NY, "Asia/Kolkata", "Nope/Zone", ""])),
    when=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
)
def test_any_window_gives_a_verdict_or_a_clear_error(
    schedule: str, duration: str, zone: str | None, when: datetime
) -> None:
    raw = deny(schedule, duration)
    if zone is not None:
        raw["timeZone"] = zone
    project = windows(raw)
    verdict = sync_verdict(project, APP, when)
    if project.error is not None:
        assert project.error.startswith("projects/prod.yaml: AppProject prod: spec.syncWindows[0]")
        assert not verdict.automated and not verdict.manual
        return
    assert verdict.automated is verdict.manual  # a deny without manualSync
    if not verdict.automated:
        assert verdict.until is not None and verdict.until > when


@settings(max_examples=200, deadline=None)
@given(raw=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12,
))  # fmt: skip
def test_any_yaml_shape_gives_windows_or_an_error(raw: Any) -> None:
    project = project_windows({"spec": {"syncWindows": raw}}, project="p", file="p.yaml")
    assert (project.error is None) or project.error.startswith("p.yaml: AppProject p: spec")


# ---------------------------------------------------------------- the worker's decision

HELD = sync_verdict(windows(deny("0 12 * * *", "1h")), APP, NOON)
BROKEN = sync_verdict(windows({"kind": "deny"}), APP, NOON)
ALLOWED_NOW = sync_verdict(windows(allow("0 12 * * *", "1h")), APP, NOON)
SYNCED_BEFORE = LastOperation(revision="a" * 40, phase="Succeeded", finished_monotonic=1.0)


@pytest.mark.parametrize(
    ("status", "revision", "window", "action", "held"),
    [
        pytest.param(SyncStatus.OUT_OF_SYNC, "b" * 40, None, "sync", False, id="no windows"),
        pytest.param(SyncStatus.OUT_OF_SYNC, "b" * 40, ALLOWED_NOW, "sync", False, id="allowed"),
        pytest.param(SyncStatus.OUT_OF_SYNC, "b" * 40, HELD, "wait", True, id="new rev held"),
        pytest.param(SyncStatus.OUT_OF_SYNC, "a" * 40, HELD, "wait", True, id="self-heal held"),
        pytest.param(SyncStatus.OUT_OF_SYNC, "b" * 40, BROKEN, "wait", True, id="fail closed"),
        pytest.param(SyncStatus.SYNCED, "b" * 40, HELD, "none", False, id="nothing to hold"),
    ],
)
def test_auto_sync_waits_while_a_window_holds_it(
    status: SyncStatus, revision: str, window: WindowVerdict | None, action: str, held: bool
) -> None:
    decision = decide_auto_sync(
        automated=Automated(prune=True, self_heal=True),
        status=status,
        revision=revision,
        last=SYNCED_BEFORE,
        prune_only=False,
        self_heal_attempts=0,
        now_monotonic=1000.0,
        window=window,
    )
    assert decision.action == action
    assert (decision.window is not None) is held
    if held:
        assert window is not None
        assert decision.reason == window.reason
        assert decision.delay_s == window.wait_s  # 0 when only a fix can lift it


def test_auto_sync_off_is_not_held_by_windows() -> None:
    decision = decide_auto_sync(
        automated=None,
        status=SyncStatus.OUT_OF_SYNC,
        revision="b" * 40,
        last=None,
        prune_only=False,
        self_heal_attempts=0,
        now_monotonic=0.0,
        window=HELD,
    )
    assert (decision.action, decision.window) == ("none", None)


def test_a_start_in_the_repeated_autumn_hour_happens_once() -> None:
    # 2026-11-01: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST); the window
    # starts at the first only, so it is over during the second.
    window = windows(deny("30 1 * * *", "30m", timeZone=NY))
    assert not sync_verdict(window, APP, datetime(2026, 11, 1, 5, 40, tzinfo=UTC)).automated
    assert sync_verdict(window, APP, datetime(2026, 11, 1, 6, 40, tzinfo=UTC)).automated


def test_cronsim_extras_are_accepted_and_descriptors_refused() -> None:
    # the last day of June 2026 is Tuesday the 30th
    last_day = windows(deny("0 0 L * *", "24h"))
    assert last_day.error is None
    assert not sync_verdict(last_day, APP, datetime(2026, 6, 30, 12, tzinfo=UTC)).automated
    assert sync_verdict(last_day, APP, datetime(2026, 6, 29, 12, tzinfo=UTC)).automated
    assert windows(deny("0 0 LW * *", "1h")).error is None
    assert "not a 5-field cron" in (windows(deny("@weekly", "1h")).error or "")


def test_description_and_sync_overrun_are_accepted() -> None:
    project = windows(deny("0 12 * * *", "1h", description="freeze", syncOverrun=True))
    assert project.error is None and len(project.windows) == 1


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "hub.db", create=True)
    yield s
    s.close()


def stored_app(store: Store, *, project: str, server: str, cluster: str) -> AppRecord:
    manifest = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web-east"},
        "spec": {
            "project": project,
            "source": {"repoURL": "https://git.example/r.git", "path": "p"},
            "destination": {"server": server, "namespace": "web"},
        },
    }
    desired = DesiredApp.from_manifest(manifest, appset=None, source="root", cluster=cluster)
    with AppStore(store).transaction() as txn:
        return txn.put_desired(desired)


def put_project(store: Store, spec: dict[str, Any]) -> None:
    record = ProjectRecord(
        name="prod", source="root", file="sets/project.yaml", manifest={"spec": spec}, sha="1"
    )
    with AppStore(store).transaction() as txn:
        txn.replace_projects("root", [record])


def test_the_hub_reads_the_stored_project_and_matches_the_registered_cluster_name(
    store: Store,
) -> None:
    apps = AppStore(store)
    rec = stored_app(store, project="prod", server="https://10.0.0.7:6443", cluster="east-1")
    assert window_target(rec).cluster_names == ("east-1",)
    assert window_verdict_of(apps, rec).automated  # no project stored: no windows
    # always active: starts every minute, lasts an hour
    put_project(store, {"syncWindows": [deny("* * * * *", "1h", applications=None,
                                             clusters=["east-*"])]})  # fmt: skip
    verdict = window_verdict_of(apps, rec)
    assert (verdict.automated, verdict.manual) == (False, False)
    assert "deny window syncWindows[0]" in verdict.reason


def test_an_invalid_stored_window_names_the_source_file_and_field(store: Store) -> None:
    rec = stored_app(store, project="prod", server="https://east", cluster="east")
    put_project(store, {"syncWindows": [deny("0 25 * * *", "1h")]})
    verdict = window_verdict_of(AppStore(store), rec)
    assert not verdict.manual
    assert "root:sets/project.yaml: AppProject prod: spec.syncWindows[0].schedule:" in (
        verdict.reason
    )
