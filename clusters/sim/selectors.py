"""Label and field selectors, parsed once into matchers with kube-apiserver's grammar.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a``,
``!a``, comma-separated (all must hold). Field selectors: ``path=value``, ``path==value``,
``path!=value`` over ``metadata.name``, ``metadata.namespace`` and a few per-kind fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

Op = Literal["=", "!=", "in", "notin", "exists", "!"]

_KEY = re.compile(
    r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$"
)
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class SelectorError(ValueError):
    """An unparsable selector; the message is what kube-apiserver would say."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    key: str
    op: Op
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op == "=" or self.op == "in":
            return self.key in labels and labels[self.key] in self.values
        # != and notin also match objects without the label, as in Kubernetes.
        return self.key not in labels or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


EVERYTHING = LabelSelector()


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unable to parse requirement: unbalanced ')' in {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise SelectorError(f"unable to parse requirement: unclosed '(' in {text!r}")
    parts.append("".join(cur))
    return parts


def _check_key(key: str) -> str:
    if not _KEY.match(key) or len(key.rpartition("/")[2]) > 63:
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"unable to parse requirement: invalid label value {value!r}")
    return value


_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a label selector string; an empty one matches everything."""
    if not text or not text.strip():
        return EVERYTHING
    return _parse_label_selector(text)


# The controllers list by the same few selectors on every pass, and a parsed selector is
# immutable: parse each string once (a refused one is not cached, and raises every time).
@lru_cache(maxsize=4096)
def _parse_label_selector(text: str) -> LabelSelector:
    reqs: list[Requirement] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise SelectorError(f"unable to parse requirement: empty requirement in {text!r}")
        m = _SET_RE.match(part)
        if m:
            values = [v.strip() for v in m.group(3).split(",")]
            reqs.append(
                Requirement(
                    key=_check_key(m.group(1)),
                    op="in" if m.group(2) == "in" else "notin",
                    values=frozenset(_check_value(v) for v in values),
                )
            )
        elif "!=" in part:
            key, _, value = part.partition("!=")
            reqs.append(
                Requirement(
                    key=_check_key(key.strip()),
                    op="!=",
                    values=frozenset({_check_value(value.strip())}),
                )
            )
        elif "=" in part:
            key, _, value = part.partition("==") if "==" in part else part.partition("=")
            reqs.append(
                Requirement(
                    key=_check_key(key.strip()),
                    op="=",
                    values=frozenset({_check_value(value.strip())}),
                )
            )
        elif part.startswith("!"):
            reqs.append(Requirement(key=_check_key(part[1:].strip()), op="!"))
        else:
            reqs.append(Requirement(key=_check_key(part), op="exists"))
    return LabelSelector(requirements=tuple(reqs))


def selector_from_spec(spec: Mapping[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` (matchLabels/matchExpressions) as a matcher.

    An absent selector matches nothing in workloads, but callers decide that; an empty one
    matches everything, as in Kubernetes.
    """
    if not spec:
        return EVERYTHING
    reqs = [
        Requirement(key=str(k), op="=", values=frozenset({str(v)}))
        for k, v in (spec.get("matchLabels") or {}).items()
    ]
    ops: dict[str, Op] = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in spec.get("matchExpressions") or ():
        op = ops.get(str(expr.get("operator")))
        if op is None:
            raise SelectorError(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(
            Requirement(
                key=str(expr.get("key")),
                op=op,
                values=frozenset(map(str, expr.get("values") or ())),
            )
        )
    return LabelSelector(requirements=tuple(reqs))


def selector_to_string(spec: Mapping[str, Any] | None) -> str:
    """Render a ``metav1.LabelSelector`` as the query-string form (for Scale.status.selector)."""
    if not spec:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((spec.get("matchLabels") or {}).items())]
    for expr in spec.get("matchExpressions") or ():
        key, op, values = (
            expr.get("key"),
            expr.get("operator"),
            ",".join(sorted(str(v) for v in expr.get("values") or ())),
        )
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


# Field selectors ------------------------------------------------------------------------

# Fields the real API server accepts per kind, beyond metadata.name/metadata.namespace.
_KIND_FIELDS: dict[str, frozenset[str]] = {
    "Pod": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"}),
    "Event": frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"}),
    "Secret": frozenset({"type"}),
    "Namespace": frozenset({"status.phase"}),
    "Node": frozenset({"spec.unschedulable"}),
    "ReplicaSet": frozenset({"status.replicas"}),
    "Job": frozenset({"status.successful"}),
    "PersistentVolumeClaim": frozenset(),
}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldRequirement:
    path: str
    negate: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        actual = field_value(obj, self.path)
        return (actual != self.value) if self.negate else (actual == self.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def exact_name(self) -> str | None:
        """The name an ``metadata.name=x`` requirement pins, for a direct lookup."""
        for r in self.requirements:
            if r.path == "metadata.name" and not r.negate:
                return r.value
        return None


NO_FIELDS = FieldSelector()


def field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    """Parse a field selector for objects of ``kind``; unknown fields are errors, as in k8s."""
    if not text or not text.strip():
        return NO_FIELDS
    allowed = {"metadata.name", "metadata.namespace"} | _KIND_FIELDS.get(kind, frozenset())
    reqs: list[FieldRequirement] = []
    for raw in text.split(","):
        part = raw.strip()
        if "!=" in part:
            path, _, value = part.partition("!=")
            negate = True
        elif "==" in part:
            path, _, value = part.partition("==")
            negate = False
        elif "=" in part:
            path, _, value = part.partition("=")
            negate = False
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        path = path.strip()
        if path not in allowed:
            raise SelectorError(f"field label not supported: {path}")
        reqs.append(FieldRequirement(path=path, negate=negate, value=value.strip()))
    return FieldSelector(requirements=tuple(reqs))
