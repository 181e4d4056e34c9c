"""Argo CD's RBAC model and policy format, evaluated with casbin (as Argo CD does).

A request is (subject, resource, action, object): ``alice applications sync team-a/web``.
The policy is CSV lines, exactly as in ``argocd-rbac-cm``'s ``policy.csv``::

    p, role:org-admin, applications, sync, */*, allow
    p, alice, applications, delete, prod/*, deny
    g, alice, role:org-admin

read from ``$HUB_HOME/rbac.csv`` and ``$HUB_HOME/rbac.yaml`` (``policy.default``, optionally
``policy.csv`` too, as in the ConfigMap), plus the built-in ``role:readonly`` and
``role:admin`` and the roles of every AppProject in the store (``spec.roles[].policies``,
subjects ``proj:<project>:<role>``). A ``deny`` line overrides any ``allow``; the default
role is tried first, as Argo CD's enforcer does, so what it allows nobody is denied.

Objects are ``<project>/<name>`` for applications, applicationsets and logs, and the name
for clusters, projects and repositories. Patterns are globs (``*`` crosses ``/``), Argo's
``globOrRegexMatch`` in its default glob mode.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import casbin
import yaml
from casbin.model import Model

from hub.errors import HubUsageError
from hub.store import Store

log = logging.getLogger(__name__)

RBAC_CSV = "rbac.csv"
RBAC_YAML = "rbac.yaml"
DEFAULT_WHEN_UNCONFIGURED = "role:readonly"  # no rbac.yaml: reads stay open, as before

# Argo CD's assets/model.conf, unchanged.
MODEL_TEXT = """
[request_definition]
r = sub, res, act, obj

[policy_definition]
p = sub, res, act, obj, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && globOrRegexMatch(r.res, p.res) && globOrRegexMatch(r.act, p.act) \
&& globOrRegexMatch(r.obj, p.obj)
"""

RESOURCES = (
    "applications",
    "applicationsets",
    "clusters",
    "projects",
    "repositories",
    "logs",
    "exec",
    "accounts",
    "certificates",
    "gpgkeys",
    "extensions",
    "audit",
)
ACTIONS = ("get", "create", "update", "delete", "sync", "override", "action", "invoke")

# Argo CD's assets/builtin-policy.csv, reduced to what the hub has, plus `audit`.
BUILTIN_POLICY = """
p, role:readonly, applications, get, */*, allow
p, role:readonly, applicationsets, get, */*, allow
p, role:readonly, clusters, get, *, allow
p, role:readonly, repositories, get, *, allow
p, role:readonly, projects, get, *, allow
p, role:readonly, accounts, get, *, allow
p, role:readonly, logs, get, */*, allow

p, role:admin, applications, create, */*, allow
p, role:admin, applications, update, */*, allow
p, role:admin, applications, delete, */*, allow
p, role:admin, applications, sync, */*, allow
p, role:admin, applications, override, */*, allow
p, role:admin, applications, action/*, */*, allow
p, role:admin, applicationsets, create, */*, allow
p, role:admin, applicationsets, update, */*, allow
p, role:admin, applicationsets, delete, */*, allow
p, role:admin, clusters, create, *, allow
p, role:admin, clusters, update, *, allow
p, role:admin, clusters, delete, *, allow
p, role:admin, repositories, create, *, allow
p, role:admin, repositories, update, *, allow
p, role:admin, repositories, delete, *, allow
p, role:admin, projects, create, *, allow
p, role:admin, projects, update, *, allow
p, role:admin, projects, delete, *, allow
p, role:admin, accounts, update, *, allow
p, role:admin, accounts, create, *, allow
p, role:admin, accounts, delete, *, allow
p, role:admin, exec, create, */*, allow
p, role:admin, audit, get, *, allow

g, role:admin, role:readonly
"""

_GLOB_CHARS = frozenset("*?[{")
_CACHE_LIMIT = 50_000


class PolicyError(HubUsageError):
    """A policy line or file that cannot be used; names the file and the line."""


@dataclass(frozen=True, kw_only=True)
class PolicyRule:
    """``p, subject, resource, action, object, effect``."""

    subject: str
    resource: str
    action: str
    object: str
    effect: str  # allow | deny

    def line(self) -> str:
        return f"p, {self.subject}, {self.resource}, {self.action}, {self.object}, {self.effect}"


@dataclass(frozen=True, kw_only=True)
class GroupRule:
    """``g, member, role``: ``member`` (a user, group or role) has ``role``."""

    member: str
    role: str

    def line(self) -> str:
        return f"g, {self.member}, {self.role}"


@dataclass(frozen=True, kw_only=True)
class ParsedPolicy:
    rules: tuple[PolicyRule, ...] = ()
    groups: tuple[GroupRule, ...] = ()

    def __add__(self, other: ParsedPolicy) -> ParsedPolicy:
        return ParsedPolicy(rules=self.rules + other.rules, groups=self.groups + other.groups)


@dataclass(frozen=True, kw_only=True)
class RbacConfig:
    """The policy of a home: ``policy.default`` and the lines of ``rbac.csv``/``rbac.yaml``."""

    default_role: str
    policy: ParsedPolicy = ParsedPolicy()


def _check_word(value: str, what: str, where: str) -> None:
    if not value:
        raise PolicyError(f"{where}: the {what} is empty")
    if any(c.isspace() for c in value):
        raise PolicyError(f"{where}: the {what} {value!r} contains white space")


def parse_policy_csv(text: str, source: str) -> ParsedPolicy:
    """Policy CSV (``p``/``g`` lines, ``#`` comments) into rules; ``PolicyError`` names the
    source, the line number and the line for anything else."""
    rules: list[PolicyRule] = []
    groups: list[GroupRule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source} line {number} ({stripped!r})"
        try:
            fields = next(csv.reader([stripped], skipinitialspace=True))
        except csv.Error as exc:
            raise PolicyError(f"{where}: not a CSV line: {exc}") from None
        fields = [f.strip() for f in fields]
        kind = fields[0]
        if kind == "p":
            if len(fields) != 6:
                raise PolicyError(
                    f"{where}: a policy line has 6 fields "
                    "(p, subject, resource, action, object, allow|deny), this one "
                    f"has {len(fields)}"
                )
            _, subject, resource, action, obj, effect = fields
            for value, what in (
                (subject, "subject"),
                (resource, "resource"),
                (action, "action"),
                (obj, "object"),
            ):
                _check_word(value, what, where)
            if effect not in ("allow", "deny"):
                raise PolicyError(f"{where}: the effect must be allow or deny, not {effect!r}")
            if not _GLOB_CHARS & set(resource) and resource not in RESOURCES:
                raise PolicyError(
                    f"{where}: unknown resource {resource!r}; expected one of "
                    f"{', '.join(RESOURCES)} (or a glob)"
                )
            rules.append(
                PolicyRule(
                    subject=subject, resource=resource, action=action, object=obj, effect=effect
                )
            )
        elif kind == "g":
            if len(fields) != 3:
                raise PolicyError(
                    f"{where}: a group line has 3 fields (g, user-or-group, role), this one "
                    f"has {len(fields)}"
                )
            _check_word(fields[1], "member", where)
            _check_word(fields[2], "role", where)
            groups.append(GroupRule(member=fields[1], role=fields[2]))
        else:
            raise PolicyError(f"{where}: a line starts with p or g, not {kind!r}")
    return ParsedPolicy(rules=tuple(rules), groups=tuple(groups))


BUILTIN = parse_policy_csv(BUILTIN_POLICY, "built-in policy")

_YAML_KEYS = ("policy.default", "policy.csv", "policy.matchMode", "scopes")


def load_rbac_config(home: Path) -> RbacConfig:
    """``home``'s ``rbac.csv`` and ``rbac.yaml`` (both optional).

    ``rbac.yaml`` holds ``policy.default`` and optionally ``policy.csv`` (the keys of
    ``argocd-rbac-cm``; a whole ConfigMap with them under ``data`` is accepted too).
    Without ``rbac.yaml`` the default role is ``role:readonly``, so reads stay as open
    as they were before there was a policy.
    """
    default_role = DEFAULT_WHEN_UNCONFIGURED
    policy = ParsedPolicy()
    yaml_path = home / RBAC_YAML
    if yaml_path.exists():
        doc = _read_yaml(yaml_path)
        default_role = doc.get("policy.default", "") or ""
        if not isinstance(default_role, str) or any(c.isspace() for c in default_role):
            raise PolicyError(
                f"{yaml_path}: policy.default must be one role name, e.g. role:readonly"
            )
        inline = doc.get("policy.csv", "")
        if not isinstance(inline, str):
            raise PolicyError(f"{yaml_path}: policy.csv must be a string of CSV lines (use |)")
        policy = parse_policy_csv(inline, f"{yaml_path} policy.csv")
    csv_path = home / RBAC_CSV
    if csv_path.exists():
        try:
            text = csv_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{csv_path}: cannot read: {exc}") from None
        policy = policy + parse_policy_csv(text, str(csv_path))
    return RbacConfig(default_role=default_role, policy=policy)


def _read_yaml(path: Path) -> Mapping[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not YAML: {exc}") from None
    if doc is None:
        return {}
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        doc = doc.get("data") or {}
    if not isinstance(doc, dict):
        raise PolicyError(f"{path}: expected a mapping with policy.default and policy.csv")
    for key in doc:
        if key not in _YAML_KEYS:
            raise PolicyError(f"{path}: unknown key {key!r}; expected {', '.join(_YAML_KEYS[:2])}")
    mode = doc.get("policy.matchMode", "glob")
    if mode != "glob":
        raise PolicyError(f"{path}: policy.matchMode {mode!r}: only glob is supported")
    return doc


def project_policy(
    projects: Iterable[tuple[str, Mapping[str, Any]]],
) -> tuple[ParsedPolicy, list[str]]:
    """The roles of AppProjects ``(name, manifest)``: their policies and groups, and the
    problems of lines that were left out.

    As Argo CD validates them: a role's lines must name ``proj:<project>:<role>`` as their
    subject and an object of that project (``<project>/...``); a line that does not is
    dropped (it grants nothing) and reported, so one bad project cannot break the rest.
    """
    out = ParsedPolicy()
    problems: list[str] = []
    for project, manifest in projects:
        spec = manifest.get("spec")
        roles = spec.get("roles") if isinstance(spec, Mapping) else None
        if not isinstance(roles, list):
            continue
        for index, role in enumerate(roles):
            where = f"AppProject {project} spec.roles[{index}]"
            if not isinstance(role, Mapping) or not isinstance(role.get("name"), str):
                problems.append(f"{where}: a role needs a name")
                continue
            subject = f"proj:{project}:{role['name']}"
            lines = role.get("policies") or []
            if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
                problems.append(f"{where}.policies: expected a list of policy lines")
                lines = []
            rules: list[PolicyRule] = []
            for n, line in enumerate(lines):
                try:
                    parsed = parse_policy_csv(line, f"{where}.policies[{n}]")
                except PolicyError as exc:
                    problems.append(str(exc))
                    continue
                for rule in parsed.rules:
                    if rule.subject != subject:
                        problems.append(
                            f"{where}.policies[{n}]: the subject must be {subject}, "
                            f"not {rule.subject}"
                        )
                    elif not rule.object.startswith(f"{project}/"):
                        problems.append(
                            f"{where}.policies[{n}]: the object must be {project}/<name> "
                            f"or {project}/*, not {rule.object}"
                        )
                    else:
                        rules.append(rule)
                if parsed.groups:
                    problems.append(f"{where}.policies[{n}]: g lines belong in groups")
            groups = role.get("groups") or []
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                problems.append(f"{where}.groups: expected a list of group names")
                groups = []
            out = out + ParsedPolicy(
                rules=tuple(rules),
                groups=tuple(GroupRule(member=g, role=subject) for g in groups),
            )
    return out, problems


_BRACES = re.compile(r"\{([^{}]*)\}")


@functools.lru_cache(maxsize=4096)
def _alternatives(pattern: str) -> tuple[str, ...]:
    """``{a,b}`` alternatives (gobwas/glob's, which Argo CD uses) expanded to plain globs."""
    match = _BRACES.search(pattern)
    if match is None:
        return (pattern,)
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return tuple(
        alt for choice in match.group(1).split(",") for alt in _alternatives(head + choice + tail)
    )


def glob_match(value: str, pattern: str) -> bool:
    """Argo CD's ``globOrRegexMatch`` in glob mode: ``*`` matches any text, ``/`` too;
    ``?``, ``[...]`` and ``{a,b}`` as in gobwas/glob."""
    if pattern == "*":
        return True
    if "{" not in pattern:
        return fnmatch.fnmatchcase(value, pattern)
    return any(fnmatch.fnmatchcase(value, p) for p in _alternatives(pattern))


@dataclass(frozen=True, kw_only=True)
class Decision:
    allowed: bool
    subject: str
    resource: str
    action: str
    object: str
    rule: str | None = None  # the line that decided it: the allow, or the deny that won

    def message(self) -> str:
        who = self.subject or "anonymous"
        verdict = "may" if self.allowed else "may not"
        why = (
            f"by {self.rule}"
            if self.rule
            else "no policy line allows it"
            if not self.allowed
            else "allowed"
        )
        return f"{who} {verdict} {self.action} {self.resource} {self.object} ({why})"

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "subject": self.subject,
            "action": self.action,
            "resource": self.resource,
            "object": self.object,
            "rule": self.rule,
        }


@dataclass(kw_only=True)
class Authorizer:
    """Decisions over one policy. Thread-safe; cheap to ask again (decisions are cached)."""

    default_role: str
    policy: ParsedPolicy
    problems: Sequence[str] = ()
    _roles: Any = field(init=False, repr=False)
    _by_subject: dict[str, list[PolicyRule]] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cache: dict[tuple[str, str, str, str], Decision] = field(default_factory=dict, repr=False)
    _enforcers: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # The whole policy's role graph; each subject is then evaluated by an enforcer
        # holding only the lines of the subjects it inherits from. That is exact (the
        # matcher starts with g(r.sub, p.sub), which no other line can satisfy) and keeps
        # a decision from walking 1,000 lines through casbin's expression evaluator.
        self._roles = casbin_enforcer(self.policy.rules, self.policy.groups)
        self._by_subject = {}
        for rule in self.policy.rules:
            self._by_subject.setdefault(rule.subject, []).append(rule)

    def _subject_enforcer(self, subject: str) -> Any:
        enforcer = self._enforcers.get(subject)
        if enforcer is None:
            inherited = {subject, *self._roles.get_implicit_roles_for_user(subject)}
            rules = [r for s in sorted(inherited) for r in self._by_subject.get(s, ())]
            groups = [g for g in self.policy.groups if g.member in inherited]
            enforcer = casbin_enforcer(rules, groups)
            if len(self._enforcers) >= _CACHE_LIMIT // 10:
                self._enforcers.clear()
            self._enforcers[subject] = enforcer
        return enforcer

    @classmethod
    def build(
        cls,
        config: RbacConfig,
        projects: Iterable[tuple[str, Mapping[str, Any]]] = (),
    ) -> Authorizer:
        extra, problems = project_policy(projects)
        return cls(
            default_role=config.default_role,
            policy=BUILTIN + config.policy + extra,
            problems=tuple(problems),
        )

    def _enforce(self, subject: str, resource: str, action: str, obj: str) -> Decision:
        with self._lock:  # casbin's enforcer is not documented as thread-safe
            ok, explain = self._subject_enforcer(subject).enforce_ex(subject, resource, action, obj)
        rule = f"p, {', '.join(explain)}" if explain else None
        return Decision(
            allowed=bool(ok), subject=subject, resource=resource, action=action, object=obj,
            rule=rule,
        )  # fmt: skip

    def decide(self, subject: str, resource: str, action: str, obj: str) -> Decision:
        key = (subject, resource, action, obj)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        decision = self.decide_uncached(subject, resource, action, obj)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = decision
        return decision

    def decide_uncached(self, subject: str, resource: str, action: str, obj: str) -> Decision:
        # Argo CD's enforcer: the default role first, then the subject itself.
        if self.default_role and self.default_role != subject:
            by_default = self._enforce(self.default_role, resource, action, obj)
            if by_default.allowed:
                return Decision(
                    allowed=True, subject=subject, resource=resource, action=action,
                    object=obj, rule=f"{by_default.rule} (policy.default)",
                )  # fmt: skip
        if not subject:
            return Decision(
                allowed=False, subject=subject, resource=resource, action=action, object=obj
            )
        return self._enforce(subject, resource, action, obj)

    def can(self, subject: str, resource: str, action: str, obj: str) -> bool:
        return self.decide(subject, resource, action, obj).allowed


def casbin_enforcer(rules: Iterable[PolicyRule], groups: Iterable[GroupRule]) -> Any:
    """A casbin enforcer of Argo CD's model over these lines."""
    model = Model()
    model.load_model_from_text(MODEL_TEXT)
    enforcer = casbin.Enforcer(model)
    enforcer.add_function("globOrRegexMatch", glob_match)
    p = list(dict.fromkeys((r.subject, r.resource, r.action, r.object, r.effect) for r in rules))
    if p:
        enforcer.add_policies([list(x) for x in p])
    g = list(dict.fromkeys((x.member, x.role) for x in groups))
    if g:
        enforcer.add_grouping_policies([list(x) for x in g])
    return enforcer


def files_signature(home: Path) -> tuple[tuple[int, int] | None, ...]:
    """What changes when ``rbac.csv`` or ``rbac.yaml`` is edited (mtime, size)."""
    out: list[tuple[int, int] | None] = []
    for name in (RBAC_CSV, RBAC_YAML):
        try:
            st = os.stat(home / name)
        except FileNotFoundError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size))
    return tuple(out)


def _project_versions(store: Store) -> tuple[tuple[str, str], ...]:
    """(name, commit) of every AppProject: what changes when one is edited in Git."""
    with store.read() as db:
        rows = db.execute("SELECT name, sha FROM app_projects ORDER BY name").fetchall()
    return tuple((str(n), str(s)) for n, s in rows)


def _projects(store: Store) -> list[tuple[str, Mapping[str, Any]]]:
    with store.read() as db:
        rows = db.execute("SELECT name, manifest FROM app_projects ORDER BY name").fetchall()
    return [(str(n), json.loads(m)) for n, m in rows]


def load_authorizer(home: Path, store: Store) -> Authorizer:
    """The policy in force for ``home``: its files, the built-in roles, the AppProjects."""
    return Authorizer.build(load_rbac_config(home), _projects(store))


class PolicyCache:
    """The ``Authorizer`` of a running hub, rebuilt when the files or the projects change.

    A policy file broken while the hub runs keeps the last good policy in force (and is
    logged once per change), so a typo cannot open or close the API by accident.
    """

    def __init__(self, home: Path, store: Store) -> None:
        self.home = home
        self.store = store
        self._lock = threading.Lock()
        self._key: Any = None
        self._current: Authorizer | None = None
        self.error: str | None = None

    def current(self) -> Authorizer:
        key = (files_signature(self.home), _project_versions(self.store))
        with self._lock:
            if self._current is not None and key == self._key:
                return self._current
            try:
                authorizer = Authorizer.build(load_rbac_config(self.home), _projects(self.store))
            except PolicyError as exc:
                if self._current is None:
                    raise
                if self.error != str(exc):
                    log.error("RBAC policy not reloaded, the last good one stays: %s", exc)
                self.error = str(exc)
                self._key = key
                return self._current
            for problem in authorizer.problems:
                log.warning("RBAC: %s (the line is ignored)", problem)
            self._current, self._key, self.error = authorizer, key, None
            return authorizer
