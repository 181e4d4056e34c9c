"""Pure helpers shared by the simulated controllers: time, names, hashes, conditions, faults.

Nothing here does I/O; everything is unit-tested without a cluster.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from clusters.sim.interface import Obj
from clusters.sim.selectors import selector_to_string

# The alphabet Kubernetes uses for generated names and hashes: no vowels (no accidental
# words) and no characters that look alike.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

Fault = Literal["crashloop", "fail"]


# --- time (now and its text: clusters.sim.clock) ---------------------------------------


def parse_time(text: object) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp, or None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def go_duration(seconds: float) -> str:
    """A duration the way Go prints one (``10s``, ``1m20s``, ``200ms``), for kubelet messages."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


# --- names and hashes -------------------------------------------------------------------


def random_suffix(length: int = 5) -> str:
    """The random part of a generated name (``web-7d4b9c-x2k9z``)."""
    return "".join(random.choice(SAFE_ALPHABET) for _ in range(length))


@functools.lru_cache(maxsize=4096)
def fnv32a(data: bytes) -> int:
    # Cached: every Deployment reconcile hashes its (unchanged) template again, and this
    # pure-Python loop over the template's JSON was a visible share of the controllers' time.
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def safe_encode(text: str) -> str:
    """Kubernetes' SafeEncodeString: each byte picks a letter of the safe alphabet."""
    return "".join(SAFE_ALPHABET[ord(ch) % len(SAFE_ALPHABET)] for ch in text)


def template_hash(template: Mapping[str, Any], collision_count: int = 0) -> str:
    """The ``pod-template-hash`` / ``controller-revision-hash`` of a pod template.

    Like Kubernetes: FNV-32a over a deterministic rendering of the template (plus the
    collision count when non-zero), printed in decimal and safe-encoded. The rendering is
    canonical JSON rather than Go's object dump, so values differ from a real cluster's
    but have the same shape and stability (same template, same hash).
    """
    payload = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        payload += str(collision_count).encode()
    return safe_encode(str(fnv32a(payload)))


def stable_int(*parts: str) -> int:
    """A stable integer from strings (for fake IPs and node spreading)."""
    digest = hashlib.blake2b("/".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def fake_ip(prefix: str, *parts: str) -> str:
    """A stable address ``prefix.x.y`` (prefix has two octets) with y never 0 or 255."""
    value = stable_int(*parts)
    third = (value >> 8) & 0xFF
    fourth = value % 253 + 1
    return f"{prefix}.{third}.{fourth}"


def fake_digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


# --- int-or-percent ---------------------------------------------------------------------


def int_or_percent(value: object, total: int, *, round_up: bool, default: str = "25%") -> int:
    """Resolve an IntOrString such as ``maxSurge: 25%`` against ``total``.

    Kubernetes rounds maxSurge up and maxUnavailable down.
    """
    if value is None:
        value = default
    if isinstance(value, bool):
        raise ValueError(f"not an int or percent: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            percent = int(text[:-1])
            exact = percent * total / 100
            return math.ceil(exact) if round_up else math.floor(exact)
        return int(text)
    raise ValueError(f"not an int or percent: {value!r}")


# --- object accessors -------------------------------------------------------------------


def spec_of(obj: Obj) -> dict[str, Any]:
    value = obj.get("spec")
    return value if isinstance(value, dict) else {}


def status_of(obj: Obj) -> dict[str, Any]:
    value = obj.get("status")
    return value if isinstance(value, dict) else {}


def int_field(mapping: Mapping[str, Any], key: str, default: int) -> int:
    value = mapping.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def owned_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner.get("metadata", {}).get("uid")


def owner_reference(owner: Obj) -> dict[str, Any]:
    md = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": md["name"],
        "uid": md["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_terminating(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector (or a Service's plain map) in the list API's string form.

    Lists go through it so the storage filters before copying objects: a controller
    looking at its own pods must not pay for every pod of the namespace.
    """
    if not selector:
        return ""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    return selector_to_string(selector)


def map_selects(selector: Mapping[str, Any] | None, labels: Mapping[str, Any] | None) -> bool:
    """A Service-style selector (plain map): all pairs present; an empty map selects nothing."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


# --- pods -------------------------------------------------------------------------------


def pod_condition(pod: Obj, kind: str) -> dict[str, Any] | None:
    for cond in status_of(pod).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def pod_is_ready(pod: Obj) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_is_active(pod: Obj) -> bool:
    """Not terminating and not finished: counts toward a controller's replicas."""
    return not is_terminating(pod) and status_of(pod).get("phase") not in ("Succeeded", "Failed")


def pod_available_at(pod: Obj, min_ready_seconds: int) -> float | None:
    """When a ready pod counts as available (Ready for minReadySeconds); None if not ready."""
    if not pod_is_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    cond = pod_condition(pod, "Ready") or {}
    since = parse_time(cond.get("lastTransitionTime"))
    return (since or 0.0) + min_ready_seconds


def availability(
    pods: Iterable[Obj], min_ready_seconds: int, now: float
) -> tuple[int, int, float | None]:
    """(ready, available, seconds until the next ready pod becomes available or None)."""
    ready = available = 0
    wait: float | None = None
    for pod in pods:
        at = pod_available_at(pod, min_ready_seconds)
        if at is None:
            continue
        ready += 1
        if at <= now:
            available += 1
        else:
            wait = at - now if wait is None else min(wait, at - now)
    return ready, available, wait


def image_tag(image: str) -> str:
    """The tag of an image reference (``registry:5000/app:v1-crashloop@sha256:..``)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def image_fault(image: object) -> Fault | None:
    """The fault an image asks for through its tag (see docs/sim-controllers.md)."""
    if not isinstance(image, str):
        return None
    tag = image_tag(image).lower()
    if "crashloop" in tag:
        return "crashloop"
    if "fail" in tag:
        return "fail"
    return None


def pod_fault(pod_spec: Mapping[str, Any]) -> Fault | None:
    faults = {image_fault(c.get("image")) for c in pod_spec.get("containers") or []}
    if "crashloop" in faults:
        return "crashloop"
    if "fail" in faults:
        return "fail"
    return None


def normalize_image(image: str) -> str:
    """The fully-qualified reference a container runtime reports (``docker.io/library/nginx:1``)."""
    name = image
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    base = name.split("@", 1)[0]
    if ":" not in base.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


# --- conditions -------------------------------------------------------------------------


def find_condition(conditions: Iterable[Mapping[str, Any]], kind: str) -> dict[str, Any] | None:
    for cond in conditions:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def set_condition(
    conditions: list[dict[str, Any]],
    new: dict[str, Any],
) -> list[dict[str, Any]]:
    """Kubernetes' SetCondition: same status and reason -> unchanged; same status -> keep the
    transition time; the new condition goes to the end (as the controllers append it)."""
    current = find_condition(conditions, new["type"])
    if (
        current is not None
        and current.get("status") == new["status"]
        and current.get("reason") == new.get("reason")
    ):
        return conditions
    if current is not None and current.get("status") == new["status"]:
        new = {**new, "lastTransitionTime": current.get("lastTransitionTime")}
    return [c for c in conditions if c.get("type") != new["type"]] + [new]


def without_condition(conditions: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in conditions if c.get("type") != kind]


def prune_zero(mapping: dict[str, Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    """Drop zero counters the way Go's ``omitempty`` does, keeping the non-omitempty ones."""
    keep_set = set(keep)
    return {k: v for k, v in mapping.items() if k in keep_set or v not in (0, None, "", [], {})}
