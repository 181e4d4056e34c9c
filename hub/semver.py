"""Semantic versions and the constraint syntax Helm and Argo CD use (Masterminds/semver v3).

A chart source's ``targetRevision`` is an exact version or a constraint: ``1.2.3``,
``^1.2``, ``~1.2.0``, ``>=1.0 <2.0`` (also comma separated), ``1.2.x``, ``*``, ``1.2 - 1.4``,
alternatives joined with ``||``. Pre-releases match only a constraint that names one
(``>=1.0.0-0``), as in Masterminds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from hub.errors import HubUsageError


class VersionError(HubUsageError):
    """A version or constraint that cannot be parsed."""


_VERSION = re.compile(
    r"^v?(\d+)(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?"
    r"(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$"
)


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """The version ``text`` names, or None when it is not a full (wildcard-free) one."""
        m = _VERSION.match(text.strip())
        if m is None or any(g in ("x", "X", "*") for g in m.groups()[1:3]):
            return None
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), pre, text.strip())

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        # a release sorts after its pre-releases
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class _Bound:
    op: str  # one of > >= < <= = !=
    version: Version


_CMP = re.compile(r"^(>=|=>|<=|=<|!=|~>|>|<|=|~|\^)?\s*(.+)$")


def _partial(text: str, where: str) -> tuple[Version, int]:
    """A possibly partial version and how many parts it fixes (0..3)."""
    m = _VERSION.match(text)
    if m is None:
        raise VersionError(f"{where}: {text!r} is not a version")
    parts = 1
    minor, patch = m.group(2), m.group(3)
    if minor is not None and minor not in "xX*":
        parts = 2
        if patch is not None and patch not in "xX*":
            parts = 3
    elif text in ("*", "x", "X"):
        parts = 0
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    v = Version(
        int(m.group(1)),
        int(minor) if parts >= 2 else 0,
        int(patch) if parts >= 3 else 0,
        pre,
    )
    return v, parts


def _upper(v: Version, parts: int) -> Version:
    """The first version past the range a partial version covers."""
    if parts <= 1:
        return Version(v.major + 1, 0, 0, ("0",))
    return Version(v.major, v.minor + 1, 0, ("0",))


def _comparator(text: str, where: str) -> list[_Bound]:
    if text in ("*", "x", "X"):
        return [_Bound(">=", Version(0, 0, 0))]
    m = _CMP.match(text)
    if m is None:
        raise VersionError(f"{where}: cannot parse {text!r}")
    op, rest = m.group(1) or "=", m.group(2).strip()
    if rest in ("*", "x", "X"):
        return [_Bound(">=", Version(0, 0, 0))]
    v, parts = _partial(rest, where)
    low = Version(v.major, v.minor, v.patch, v.pre)
    if op == "=" and parts == 3:
        return [_Bound("=", low)]
    if op == "=":
        return [_Bound(">=", low), _Bound("<", _upper(v, parts))]
    if op in ("~", "~>"):
        return [_Bound(">=", low), _Bound("<", _upper(v, max(parts, 2)))]
    if op == "^":
        if v.major > 0 or parts == 1:
            top = Version(v.major + 1, 0, 0, ("0",))
        elif v.minor > 0 or parts == 2:
            top = Version(0, v.minor + 1, 0, ("0",))
        else:
            top = Version(0, 0, v.patch + 1, ("0",))
        return [_Bound(">=", low), _Bound("<", top)]
    if op == ">" and parts < 3:
        return [_Bound(">=", _upper(v, parts))]
    if op in ("<=", "=<") and parts < 3:
        return [_Bound("<", _upper(v, parts))]
    return [_Bound({"=>": ">=", "=<": "<="}.get(op, op), low)]


def _holds(b: _Bound, v: Version) -> bool:
    return {
        ">": v > b.version,
        ">=": v >= b.version,
        "<": v < b.version,
        "<=": v <= b.version,
        "=": v == b.version,
        "!=": v != b.version,
    }[b.op]


@dataclass(frozen=True)
class Constraint:
    groups: tuple[tuple[_Bound, ...], ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> Constraint:
        where = f"version constraint {text!r}"
        groups: list[tuple[_Bound, ...]] = []
        for alt in text.split("||"):
            alt = alt.strip()
            if not alt:
                raise VersionError(f"{where}: empty alternative")
            hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", alt)
            bounds: list[_Bound] = []
            if hyphen:
                bounds += _comparator(">=" + hyphen.group(1), where)
                bounds += _comparator("<=" + hyphen.group(2), where)
            else:
                # "op version" may have a space after the operator: glue it first
                glued = re.sub(r"(>=|=>|<=|=<|!=|~>|>|<|=|~|\^)\s+", r"\1", alt)
                for part in re.split(r"[\s,]+", glued):
                    if part:
                        bounds += _comparator(part, where)
            groups.append(tuple(bounds))
        return cls(tuple(groups), text)

    def allows(self, v: Version) -> bool:
        for group in self.groups:
            if v.pre and not any(b.version.pre for b in group):
                continue
            if all(_holds(b, v) for b in group):
                return True
        return False


def best_match(constraint_text: str, versions: list[str]) -> str | None:
    """The highest of ``versions`` that ``constraint_text`` allows: an exact listed version
    is taken as it is (so a non-semver version still works, as in Argo CD)."""
    wanted = constraint_text.strip()
    if wanted in versions:
        return wanted
    constraint = Constraint.parse(wanted)
    parsed = [(v, p) for v in versions if (p := Version.parse(v)) is not None]
    allowed = [(p, v) for v, p in parsed if constraint.allows(p)]
    if not allowed:
        return None
    return max(allowed, key=lambda pv: pv[0])[1]
