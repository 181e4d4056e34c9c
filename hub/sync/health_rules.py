"""Custom health rules of one hub: ``$HUB_HOME/health-rules.yaml``, parsed once into the
``HealthRules`` the engine and the workers use (``hub serve``, ``hub app sync/diff -f``).

Argo CD takes Lua scripts in ``argocd-cm``; we take a small declarative form instead (no
code in a config file), enough for the pitfalls docs/sync.md lists::

    appOfApps: true              # argoproj.io/Application: the child's status.health
    rules:
      - group: networking.k8s.io # "" is the core group; "*" matches any
        kind: Ingress
        health: Healthy          # a fixed status (Healthy, Suspended, Progressing,
                                 # Missing, Degraded, Unknown), or "none": no health check
      - group: example.com
        kind: Widget
        field: status.phase      # a dotted path in the live object
        map: {Ready: Healthy, Failed: Degraded}
        default: Progressing     # when the field is absent or not in map (omitted: the
                                 # next rule or the built-in one decides)

Rules are consulted in file order, before the built-ins. ``health: none`` removes the
built-in check of that kind too (it then never holds a wave, like a ConfigMap). Every
problem is a ``HealthRulesError`` naming the file, the field path and what to write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.sync.health import Health, HealthCheck, HealthRules, HealthStatus
from hub.sync.model import SyncError

FILENAME = "health-rules.yaml"
_STATUSES = ", ".join(s.value for s in HealthStatus)
_RULE_KEYS = {"group", "kind", "health", "field", "map", "default"}


class HealthRulesError(SyncError):
    """The health rules file is invalid (exit 2: a file the user wrote)."""

    exit_code = 2


@dataclass(frozen=True, kw_only=True)
class FixedHealth:
    """A kind that always has one status."""

    status: HealthStatus

    def __call__(self, obj: Mapping[str, Any]) -> Health | None:
        return Health(status=self.status, message="health rule (health-rules.yaml)")


@dataclass(frozen=True, kw_only=True)
class FieldHealth:
    """A status read from one field of the object, through a map."""

    path: tuple[str, ...]
    values: Mapping[str, HealthStatus]
    default: HealthStatus | None

    def __call__(self, obj: Mapping[str, Any]) -> Health | None:
        value: Any = obj
        for part in self.path:
            value = value.get(part) if isinstance(value, Mapping) else None
        found = None if value is None else self.values.get(str(value))
        status = found or self.default
        if status is None:
            return None
        return Health(status=status, message=f"{'.'.join(self.path)}: {value}")


def _status(value: Any, where: str) -> HealthStatus:
    try:
        return HealthStatus(str(value))
    except ValueError:
        raise HealthRulesError(
            f"{where}: {value!r} is not a health status; use one of {_STATUSES}"
        ) from None


def _text(rule: Mapping[str, Any], key: str, where: str) -> str:
    value = rule.get(key)
    if not isinstance(value, str) or (key == "kind" and not value):
        raise HealthRulesError(
            f"{where}.{key}: expected a string"
            + (' ("" for the core group, "*" for any)' if key == "group" else "")
        )
    return value


def _rule(rule: Any, where: str) -> tuple[str, str, HealthCheck | None]:
    """(group, kind, check); check None means "no health check"."""
    if not isinstance(rule, Mapping):
        raise HealthRulesError(f"{where}: expected a mapping with group, kind and health/field")
    unknown = sorted(str(k) for k in rule if k not in _RULE_KEYS)
    if unknown:
        raise HealthRulesError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_RULE_KEYS))}"
        )
    group, kind = _text(rule, "group", where), _text(rule, "kind", where)
    if ("health" in rule) == ("field" in rule):
        raise HealthRulesError(f"{where}: give exactly one of health (a status) or field")
    if "health" in rule:
        if set(rule) & {"map", "default"}:
            raise HealthRulesError(f"{where}: map and default go with field, not health")
        if str(rule["health"]).lower() == "none":
            return group, kind, None
        return group, kind, FixedHealth(status=_status(rule["health"], f"{where}.health"))
    field = rule["field"]
    if not isinstance(field, str) or not field or any(not p for p in field.split(".")):
        raise HealthRulesError(f"{where}.field: expected a dotted path like status.phase")
    values = rule.get("map")
    if not isinstance(values, Mapping) or not values:
        raise HealthRulesError(f"{where}.map: expected a mapping of field values to statuses")
    parsed = {str(k): _status(v, f"{where}.map.{k}") for k, v in values.items()}
    default = rule.get("default")
    return (
        group,
        kind,
        FieldHealth(
            path=tuple(field.split(".")),
            values=parsed,
            default=None if default is None else _status(default, f"{where}.default"),
        ),
    )


def parse_health_rules(text: str, source: str = FILENAME) -> HealthRules:
    """The rules of a health-rules file (see the module docstring)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HealthRulesError(f"{source}: not valid YAML: {exc}") from None
    if doc is None:
        return HealthRules.default()
    if not isinstance(doc, Mapping):
        raise HealthRulesError(f"{source}: expected a mapping with appOfApps and rules")
    unknown = sorted(str(k) for k in doc if k not in ("appOfApps", "rules"))
    if unknown:
        raise HealthRulesError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed: appOfApps, rules"
        )
    app_of_apps = doc.get("appOfApps", True)
    if not isinstance(app_of_apps, bool):
        raise HealthRulesError(f"{source}: appOfApps: expected true or false")
    rules = doc.get("rules") or []
    if not isinstance(rules, list):
        raise HealthRulesError(f"{source}: rules: expected a list of rules")
    parsed = [_rule(r, f"{source}: rules[{i}]") for i, r in enumerate(rules)]
    base = HealthRules.default(app_of_apps=app_of_apps)
    none = [(g, k) for g, k, check in parsed if check is None]
    builtin = {
        gk: check
        for gk, check in base.builtin.items()
        if not any(g in ("*", gk[0]) and k in ("*", gk[1]) for g, k in none)
    }
    custom = tuple((g, k, check) for g, k, check in parsed if check is not None)
    return HealthRules(custom=custom, builtin=builtin)


def load_health_rules(home: Path) -> HealthRules:
    """The hub's rules: ``$HUB_HOME/health-rules.yaml`` if present, else the defaults."""
    path = home / FILENAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return HealthRules.default()
    except (OSError, UnicodeDecodeError) as exc:
        raise HealthRulesError(f"{path}: cannot read: {exc}") from None
    return parse_health_rules(text, str(path))


__all__ = [
    "FILENAME",
    "FieldHealth",
    "FixedHealth",
    "HealthRulesError",
    "load_health_rules",
    "parse_health_rules",
]
