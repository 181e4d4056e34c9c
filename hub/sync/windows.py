"""AppProject sync windows (Argo CD's ``spec.syncWindows``): when may an Application sync.

Pure: the project's windows are parsed once into frozen dataclasses, and ``sync_verdict``
answers for one Application at an injected time ``now``. The rules are Argo CD's
(``SyncWindows.Matches``/``Active``/``InactiveAllows``/``CanSync``):

- a window is active at ``t`` when ``t`` lies in ``[start, start + duration)`` of its most
  recent schedule occurrence (a 5-field cron schedule read in the window's ``timeZone``,
  UTC by default; the duration is elapsed time);
- a window applies to an Application when one of its ``applications`` globs matches the
  Application's name, one of its ``namespaces`` globs its destination namespace, or one of
  its ``clusters`` globs its destination server or name (``andOperator: true``: every list
  the window sets must match);
- deny wins: while any applicable deny window is active, automated syncs (and self-heal)
  wait, and a manual sync is allowed only if every active applicable deny window says
  ``manualSync: true``;
- with applicable allow windows, syncs run only while one of them is active; while none is,
  automated syncs wait and a manual sync is allowed only if every inactive applicable allow
  window says ``manualSync: true``;
- no applicable window: everything is allowed.

A project whose ``syncWindows`` cannot be read fails closed: all its Applications are held
as if by a deny window without ``manualSync``, and the verdict names the error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from hub.sync.model import SyncError, parse_duration
from hub.sync.resources import argo_glob_match

WindowKind = Literal["allow", "deny"]

SYNC_WINDOW_BLOCKED = "SyncWindowBlocked"
# Overlapping occurrences of one deny window (a schedule more frequent than its duration)
# are chained to say when it really ends; past this many the hub re-checks at the end seen.
CHAIN_LIMIT = 200
_FIELDS = (
    "kind",
    "schedule",
    "duration",
    "timeZone",
    "applications",
    "namespaces",
    "clusters",
    "manualSync",
    "andOperator",
    "description",
    "syncOverrun",
)
# robfig/cron's standard syntax (what Argo CD accepts): numbers, names, * ? , - /
_CRON_FIELD = re.compile(r"[0-9A-Za-z*?,/-]+")


class SyncWindowError(SyncError):
    """An AppProject's ``spec.syncWindows`` is invalid (exit 2: bad input in a file)."""

    exit_code = 2


@dataclass(frozen=True, kw_only=True)
class WindowTarget:
    """What a window's globs are matched against: one Application's name and destination."""

    app: str
    namespace: str = ""
    server: str = ""
    cluster_names: tuple[str, ...] = ()  # spec.destination.name and the registered name


@dataclass(frozen=True, kw_only=True)
class SyncWindow:
    index: int
    kind: WindowKind
    schedule: str
    duration: str
    duration_s: float
    time_zone: str = "UTC"
    applications: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    manual_sync: bool = False
    and_operator: bool = False

    def describe(self) -> str:
        zone = "" if self.time_zone == "UTC" else f", timeZone {self.time_zone}"
        return (
            f"{self.kind} window syncWindows[{self.index}] (schedule '{self.schedule}', "
            f"duration {self.duration}{zone})"
        )

    def applies_to(self, target: WindowTarget) -> bool:
        """Argo CD's ``Matches``: any set list matching (all of them with andOperator)."""
        results: list[bool] = []
        if self.applications:
            results.append(any(glob_match(p, target.app) for p in self.applications))
        if self.namespaces:
            results.append(any(glob_match(p, target.namespace) for p in self.namespaces))
        if self.clusters:
            values = [v for v in (target.server, *target.cluster_names) if v]
            results.append(any(glob_match(p, v) for p in self.clusters for v in values))
        if not results:
            return False
        return all(results) if self.and_operator else any(results)

    def _local(self, now: datetime) -> datetime:
        return now.astimezone(ZoneInfo(self.time_zone))

    def last_start(self, now: datetime) -> datetime:
        """The most recent schedule occurrence at or before ``now`` (in UTC)."""
        # cronsim's reverse iteration excludes its starting second; start one second later.
        after = self._local(now).replace(microsecond=0) + timedelta(seconds=1)
        return next(CronSim(_cron_expr(self.schedule), after, reverse=True)).astimezone(UTC)

    def next_start(self, now: datetime) -> datetime:
        """The first schedule occurrence after ``now`` (in UTC)."""
        return next(CronSim(_cron_expr(self.schedule), self._local(now))).astimezone(UTC)

    def active(self, now: datetime) -> bool:
        start = self.last_start(now)
        return start <= now < start + timedelta(seconds=self.duration_s)

    def active_until(self, now: datetime) -> tuple[datetime, bool] | None:
        """When the window stops being active (back-to-back or overlapping occurrences
        chained) and whether that end is only a lower bound (the chain limit was reached);
        None when it is not active at ``now``."""
        length = timedelta(seconds=self.duration_s)
        end = self.last_start(now) + length
        if now >= end:
            return None
        occurrences = CronSim(_cron_expr(self.schedule), self._local(now))
        for _ in range(CHAIN_LIMIT):
            start = next(occurrences).astimezone(UTC)
            if start > end:
                return end, False
            end = max(end, start + length)
        return end, True


@dataclass(frozen=True, kw_only=True)
class ProjectWindows:
    """The sync windows of one AppProject, or why they could not be read (fail closed)."""

    project: str
    windows: tuple[SyncWindow, ...] = ()
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class WindowVerdict:
    """What the windows say for one Application at one time."""

    automated: bool  # automated syncs and self-heal may run now
    manual: bool  # a manual sync may run now
    reason: str  # names the window(s) and until when; empty when nothing holds syncs
    window: SyncWindow | None = None  # the window that holds syncs (None: allowed, or error)
    until: datetime | None = None  # when the hold may lift; None: not known (re-check later)
    wait_s: float = 0.0  # seconds from ``now`` until ``until``


ALLOWED = WindowVerdict(automated=True, manual=True, reason="")


# ---------------------------------------------------------------- parsing


def parse_sync_windows(spec: Mapping[str, Any] | None, *, where: str) -> tuple[SyncWindow, ...]:
    """``spec.syncWindows`` of an AppProject; ``where`` names the file and project."""
    raw = (spec or {}).get("syncWindows")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SyncWindowError(f"{where}: spec.syncWindows: expected a list of windows")
    return tuple(_parse_window(i, w, where=where) for i, w in enumerate(raw))


def project_windows(manifest: Mapping[str, Any], *, project: str, file: str) -> ProjectWindows:
    """The windows of an AppProject manifest; an invalid spec gives ``error`` (never raises)."""
    where = f"{file or '(unknown file)'}: AppProject {project}"
    spec = manifest.get("spec")
    try:
        if spec is not None and not isinstance(spec, Mapping):
            raise SyncWindowError(f"{where}: spec: expected a mapping")
        return ProjectWindows(project=project, windows=parse_sync_windows(spec, where=where))
    except SyncWindowError as exc:
        return ProjectWindows(project=project, error=str(exc))


def _parse_window(index: int, raw: object, *, where: str) -> SyncWindow:
    path = f"{where}: spec.syncWindows[{index}]"
    if not isinstance(raw, Mapping):
        raise SyncWindowError(f"{path}: expected a mapping with kind, schedule and duration")
    unknown = sorted(str(k) for k in raw if k not in _FIELDS)
    if unknown:
        raise SyncWindowError(
            f"{path}: unknown field(s) {', '.join(unknown)} (known: {', '.join(_FIELDS)})"
        )
    kind = raw.get("kind")
    if kind not in ("allow", "deny"):
        raise SyncWindowError(f"{path}.kind: must be 'allow' or 'deny', got {kind!r}")
    schedule = _parse_schedule(raw.get("schedule"), where=f"{path}.schedule")
    duration = raw.get("duration")
    if not isinstance(duration, str) or not duration.strip():
        raise SyncWindowError(
            f"{path}.duration: required, a Go duration like '1h' or '30m', got {duration!r}"
        )
    try:
        seconds = parse_duration(duration, where=f"{path}.duration")
    except SyncError as exc:
        raise SyncWindowError(str(exc)) from None
    if seconds <= 0:
        raise SyncWindowError(f"{path}.duration: must be positive, got {duration!r}")
    zone = raw.get("timeZone") or "UTC"
    if not isinstance(zone, str):
        raise SyncWindowError(f"{path}.timeZone: expected an IANA name like 'Europe/Paris'")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SyncWindowError(
            f"{path}.timeZone: unknown time zone {zone!r}; use an IANA name like "
            "'Europe/Paris' (default UTC)"
        ) from None
    lists = {
        key: _globs(raw.get(key), where=f"{path}.{key}")
        for key in ("applications", "namespaces", "clusters")
    }
    if not any(lists.values()):
        raise SyncWindowError(
            f"{path}: set at least one of applications, namespaces or clusters (a window "
            "without them applies to nothing)"
        )
    flags = {
        key: _flag(raw.get(key), where=f"{path}.{key}")
        for key in ("manualSync", "andOperator", "syncOverrun")
    }
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise SyncWindowError(f"{path}.description: expected a string")
    return SyncWindow(
        index=index,
        kind=kind,
        schedule=schedule,
        duration=duration.strip(),
        duration_s=seconds,
        time_zone=zone,
        applications=lists["applications"],
        namespaces=lists["namespaces"],
        clusters=lists["clusters"],
        manual_sync=flags["manualSync"],
        and_operator=flags["andOperator"],
    )


def _parse_schedule(value: object, *, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SyncWindowError(f"{where}: required, a cron schedule like '0 22 * * *'")
    fields = value.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
        raise SyncWindowError(
            f"{where}: {value!r} is not a 5-field cron schedule (minute hour day-of-month "
            "month day-of-week, e.g. '0 22 * * *')"
        )
    try:
        CronSim(_cron_expr(value), datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError, IndexError) as exc:
        raise SyncWindowError(f"{where}: {value!r}: {exc}") from None
    return " ".join(fields)


def _cron_expr(schedule: str) -> str:
    """The schedule in cronsim's terms, read as robfig/cron (Argo CD's parser) reads it."""
    fields = ["*" if f == "?" else f for f in schedule.split()]  # robfig: '?' is '*'
    # Both join day-of-month and day-of-week with AND when one is unrestricted, else OR;
    # robfig calls '*/2' restricted, cronsim calls anything starting with '*' unrestricted.
    for index, full in ((2, "1-31"), (4, "0-6")):
        if len(fields) == 5 and fields[index].startswith("*/"):
            fields[index] = full + fields[index][1:]
    return " ".join(fields)


def _globs(value: object, *, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SyncWindowError(f"{where}: expected a list of names or globs")
    return tuple(value)


def _flag(value: object, *, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SyncWindowError(f"{where}: expected true or false, got {value!r}")
    return value


def glob_match(pattern: str, value: str) -> bool:
    """Argo CD's glob (gobwas/glob without separators), the one implementation the sync
    engine has (``resources.argo_glob_match``, RE2: linear in the name); a pattern it
    cannot read matches nothing, as it did when fnmatch read it literally."""
    try:
        return argo_glob_match(pattern, value)
    except ValueError:
        return False


# ---------------------------------------------------------------- verdicts


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sync_verdict(windows: ProjectWindows, target: WindowTarget, now: datetime) -> WindowVerdict:
    """Whether ``target`` may sync at ``now`` (timezone-aware), automatically and manually."""
    if windows.error is not None:
        return WindowVerdict(
            automated=False,
            manual=False,
            reason=f"syncs held: the sync windows of project {windows.project} are invalid "
            f"(fail closed until fixed): {windows.error}",
        )
    applicable = [w for w in windows.windows if w.applies_to(target)]
    if not applicable:
        return ALLOWED
    active_denies = [
        (w, *ends)
        for w in applicable
        if w.kind == "deny"
        for ends in [w.active_until(now)]
        if ends is not None
    ]
    if active_denies:
        # Held until every active deny window has ended. Named: the one that ends last,
        # among those refusing manual syncs when any does (that is the one to change).
        until = max(end for _, end, _ in active_denies)
        manual = all(w.manual_sync for w, _, _ in active_denies)
        named = [d for d in active_denies if manual or not d[0].manual_sync]
        window, ends, open_ended = max(named, key=lambda d: d[1])
        return WindowVerdict(
            automated=False,
            manual=manual,
            reason=f"{window.describe()} of project {windows.project} is active until "
            f"{'at least ' if open_ended else ''}{_rfc3339(ends)}",
            window=window,
            until=until,
            wait_s=(until - now).total_seconds(),
        )
    allows = [w for w in applicable if w.kind == "allow"]
    if not allows or any(w.active(now) for w in allows):
        return ALLOWED
    opening = min(allows, key=lambda w: w.next_start(now))
    opens = opening.next_start(now)
    return WindowVerdict(
        automated=False,
        manual=all(w.manual_sync for w in allows),
        reason=f"no allow window of project {windows.project} is open; the next, "
        f"{opening.describe()}, opens at {_rfc3339(opens)}",
        window=opening,
        until=opens,
        wait_s=(opens - now).total_seconds(),
    )


def manual_refusal(verdict: WindowVerdict, app: str, *, action: str = "manual sync") -> str | None:
    """Why a manual sync (or a rollback, ``action``) of ``app`` is refused now, or None when
    it may run."""
    if verdict.manual:
        return None
    if verdict.window is None:
        return f"application {app}: {action} refused: {verdict.reason}"
    return (
        f"application {app}: {action} refused: {verdict.reason}, and it does not allow "
        "manual syncs (manualSync: true on the window lets people sync by hand)"
    )


__all__ = [
    "ALLOWED",
    "SYNC_WINDOW_BLOCKED",
    "ProjectWindows",
    "SyncWindow",
    "SyncWindowError",
    "WindowTarget",
    "WindowVerdict",
    "glob_match",
    "manual_refusal",
    "parse_sync_windows",
    "project_windows",
    "sync_verdict",
]
