"""Server-side defaulting of built-in kinds, as a kube-apiserver 1.30+ returns them.

``apply_defaults`` fills in what a real server adds to a manifest on create and update:
the ``SetDefaults_*`` functions of ``pkg/apis/*/v1/defaults.go``, the fields the Go types
always serialise (``resources: {}``, ``creationTimestamp: null`` in templates, zero
statuses), and the few values the registry strategies or admission plugins set on create
(Service cluster IPs and IP families, Job selector and labels, Namespace finalizers, Pod
priority and service account). Custom resources get nothing.

The function mutates in place and is idempotent: defaulting an already defaulted object
changes nothing. Values a real server derives from cluster state it does not have here
(a default StorageClass or IngressClass, the projected service-account token volume) are
not invented.
"""

from __future__ import annotations

import base64
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

Obj = dict[str, Any]

GROUP_RBAC = "rbac.authorization.k8s.io"

# Kinds whose object is (or embeds at a fixed path) a pod template.
_TEMPLATE_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
    ("", "ReplicationController"): ("spec", "template"),
    ("", "PodTemplate"): ("template",),
}


def _group_kind(obj: Obj) -> tuple[str, str]:
    api_version = obj.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else ""
    kind = obj.get("kind")
    return group, kind if isinstance(kind, str) else ""


def _map(parent: Obj, key: str) -> Obj:
    """``parent[key]`` as a dict, created when absent (a non-dict value is left to
    validation and shields its subtree from defaulting)."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _at(obj: Obj, path: tuple[str, ...]) -> Obj | None:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur if isinstance(cur, dict) else None


def default_node_port(obj: Obj, port: Obj) -> int:
    """A stable NodePort (30000-32767) when the caller has no allocator of its own."""
    meta = obj.get("metadata") or {}
    seed = f"{meta.get('namespace')}/{meta.get('name')}/{port.get('port')}/{port.get('protocol')}"
    return 30000 + zlib.crc32(seed.encode()) % 2768


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ctx:
    allocate_cluster_ip: Callable[[], str]
    allocate_node_port: Callable[[], int] | None
    server_assigned: bool


def apply_defaults(
    obj: Obj,
    *,
    allocate_cluster_ip: Callable[[], str],
    allocate_node_port: Callable[[], int] | None = None,
    server_assigned: bool = True,
) -> None:
    """Default ``obj`` in place like a real API server.

    With ``server_assigned=False`` only the decoding defaults run (``SetDefaults_*`` and
    the fields Go types always serialise): what a real server has filled in when it
    records the writer's managedFields. The rest (Service IPs, families and node ports, the
    Job selector, Namespace finalizers, Pod admission defaults) is set afterwards by the
    registry and admission and belongs to nobody. So a server calls it twice around
    ``ssa.track_update``; a single call with the default does everything.

    Jobs need ``metadata.uid`` for their generated selector: call it after assigning it.
    """
    group, kind = _group_kind(obj)
    handler = _HANDLERS.get((group, kind))
    if handler is None:
        return
    _go_round_trip(obj)
    spec = obj.get("spec")
    if kind == "Service" and isinstance(spec, dict) and spec.get("selector") == {}:
        del spec["selector"]  # a Go map there, unlike the LabelSelector structs elsewhere
    template_path = _TEMPLATE_PATHS.get((group, kind))
    if template_path is not None:
        template = _at(obj, template_path[:-1])
        if template is not None:
            _pod_template(_map(template, template_path[-1]))
    handler(
        obj,
        _Ctx(
            allocate_cluster_ip=allocate_cluster_ip,
            allocate_node_port=allocate_node_port,
            server_assigned=server_assigned,
        ),
    )


# Slices without omitempty keep an empty value; every other empty slice, and every empty
# Go map, disappears when a built-in object goes through its Go type.
_KEPT_EMPTY_LISTS = frozenset({"containers", "rules", "verbs"})
_GO_MAPS = frozenset(
    {
        "labels",
        "annotations",
        "data",
        "binaryData",
        "stringData",
        "nodeSelector",
        "matchLabels",
        "limits",
        "requests",
        "hard",
        "capacity",
        "allocatable",
    }
)
# Free-form content the round trip must not walk into (string maps, embedded schemas, and
# managedFields' field sets: Go holds a FieldsV1 as raw JSON bytes and never decodes it,
# and walking them was two thirds of a Deployment's round trip).
_OPAQUE = frozenset(
    {"labels", "annotations", "data", "binaryData", "stringData", "openAPIV3Schema", "fieldsV1"}
)


def _go_round_trip(value: Obj) -> None:
    """Drop what a built-in kind's Go type cannot hold: nulls (nil pointers; a template's
    ``creationTimestamp: null`` is the one null Go writes back), empty omitempty slices and
    empty maps. Omitted zero scalars (``readOnly: false``) are not modelled."""
    for key in list(value):
        child = value[key]
        if child is None:
            if key != "creationTimestamp":
                del value[key]
        elif isinstance(child, dict):
            if not child:
                if key in _GO_MAPS:
                    del value[key]
            elif key not in _OPAQUE:
                _go_round_trip(child)
        elif isinstance(child, list):
            if not child:
                if key not in _KEPT_EMPTY_LISTS:
                    del value[key]
            else:
                for item in child:
                    if isinstance(item, dict):
                        _go_round_trip(item)


# --- quantities -------------------------------------------------------------------

_DECIMAL_SUFFIXES = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BINARY_BY_BITS = {v: k for k, v in _BINARY_SUFFIXES.items()}
_QUANTITY = re.compile(r"([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([a-zA-Z]*|[eE][+-]?[0-9]+)")
_NANO = 10**9


def canonical_quantity(value: Any) -> Any:
    """A resource quantity in the canonical form the server stores (resource.Quantity):
    ``1000m`` is ``1``, ``0.5`` is ``500m``, ``2000`` is ``2k``, ``1024Mi`` is ``1Gi``,
    ``0.5Gi`` is ``512Mi``. Anything unparsable is returned unchanged for validation."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return value
    text = str(value) if not isinstance(value, float) else repr(value)
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        return value
    sign, digits, suffix = match.groups()
    try:
        amount = Fraction(Decimal(digits))
    except (InvalidOperation, ValueError):
        return value
    if sign == "-":
        amount = -amount
    if suffix in _BINARY_SUFFIXES:
        amount *= 2 ** _BINARY_SUFFIXES[suffix]
        style = "binary"
    elif suffix in _DECIMAL_SUFFIXES:
        amount *= Fraction(10) ** _DECIMAL_SUFFIXES[suffix]
        style = "decimal"
    elif suffix[:1] in ("e", "E"):
        amount *= Fraction(10) ** int(suffix[1:])
        style = "exponent"
    else:
        return value
    # Quantities keep nano precision; finer values round up.
    nanos = math.ceil(amount * _NANO)
    if nanos == 0:
        return "0"
    if style == "binary" and (-1024 * _NANO < nanos < 1024 * _NANO or nanos % _NANO):
        style = "decimal"
    if style == "binary":
        mantissa, bits = nanos // _NANO, 0
        while mantissa % 1024 == 0 and bits < 60:
            mantissa //= 1024
            bits += 10
        return f"{mantissa}{_BINARY_BY_BITS.get(bits, '')}"
    mantissa, exponent = nanos, -9
    while mantissa % 1000 == 0 and (style == "exponent" or exponent < 18):
        mantissa //= 1000
        exponent += 3
    if style == "exponent":
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    return f"{mantissa}{_DECIMAL_BY_EXP[exponent]}"


def _quantities(resource_list: Any) -> None:
    if isinstance(resource_list, dict):
        for name, quantity in resource_list.items():
            resource_list[name] = canonical_quantity(quantity)


def _resources(resources: Any) -> None:
    if isinstance(resources, dict):
        _quantities(resources.get("limits"))
        _quantities(resources.get("requests"))


# --- pods -------------------------------------------------------------------------


def _image_tag(image: str) -> str:
    """The tag of an image reference as docker's parser sees it ("" with a digest only)."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    _handler(probe)


def _handler(handler: Any) -> None:
    if not isinstance(handler, dict):
        return
    http_get = handler.get("httpGet")
    if isinstance(http_get, dict):
        http_get.setdefault("path", "/")
        http_get.setdefault("scheme", "HTTP")
    grpc = handler.get("grpc")
    if isinstance(grpc, dict):
        # GRPCAction.service carries +default="" and is a pointer, so it materialises.
        grpc.setdefault("service", "")


def _drop_zero(obj: Obj, zeros: dict[str, Any]) -> None:
    """Drop non-pointer omitempty fields holding their zero value (Go omits them)."""
    for key, zero in zeros.items():
        if key in obj and obj[key] == zero and type(obj[key]) is type(zero):
            del obj[key]


_CONTAINER_ZEROS: dict[str, Any] = {
    "stdin": False,
    "stdinOnce": False,
    "tty": False,
    "workingDir": "",
}
_MOUNT_ZEROS: dict[str, Any] = {"readOnly": False, "subPath": "", "subPathExpr": ""}
_PORT_ZEROS: dict[str, Any] = {"hostPort": 0, "hostIP": "", "name": ""}
_POD_SPEC_ZEROS: dict[str, Any] = {"hostNetwork": False, "hostPID": False, "hostIPC": False}


def _container(container: Obj) -> None:
    _drop_zero(container, _CONTAINER_ZEROS)
    for mount in _dicts(container.get("volumeMounts")):
        _drop_zero(mount, _MOUNT_ZEROS)
    for port in _dicts(container.get("ports")):
        _drop_zero(port, _PORT_ZEROS)
    if "imagePullPolicy" not in container:
        image = container.get("image")
        tag = _image_tag(image) if isinstance(image, str) else ""
        container["imagePullPolicy"] = "Always" if tag == "latest" else "IfNotPresent"
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    # ResourceRequirements is a non-pointer struct: the server always returns it.
    container.setdefault("resources", {})
    _resources(container["resources"])
    for port in _dicts(container.get("ports")):
        port.setdefault("protocol", "TCP")
    for env in _dicts(container.get("env")):
        value_from = env.get("valueFrom")
        if isinstance(value_from, dict):
            _field_refs(value_from)
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(container.get(name))
    lifecycle = container.get("lifecycle")
    if isinstance(lifecycle, dict):
        _handler(lifecycle.get("postStart"))
        _handler(lifecycle.get("preStop"))


def _field_refs(holder: Obj) -> None:
    field_ref = holder.get("fieldRef")
    if isinstance(field_ref, dict):
        field_ref.setdefault("apiVersion", "v1")
    resource_ref = holder.get("resourceFieldRef")
    if isinstance(resource_ref, dict):
        # Quantity is a non-pointer struct; its zero value serialises as "0".
        resource_ref.setdefault("divisor", "0")


_MODE_SOURCES = ("secret", "configMap", "downwardAPI", "projected")
_VOLUME_SOURCES = frozenset(
    {
        "hostPath",
        "emptyDir",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "secret",
        "nfs",
        "iscsi",
        "glusterfs",
        "persistentVolumeClaim",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "downwardAPI",
        "fc",
        "azureFile",
        "configMap",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "projected",
        "portworxVolume",
        "scaleIO",
        "storageos",
        "csi",
        "ephemeral",
        "image",
    }
)


def _volume(volume: Obj) -> None:
    if not any(k in volume for k in _VOLUME_SOURCES):
        volume["emptyDir"] = {}
    empty_dir = volume.get("emptyDir")
    if isinstance(empty_dir, dict) and "sizeLimit" in empty_dir:
        empty_dir["sizeLimit"] = canonical_quantity(empty_dir["sizeLimit"])
    for source in _MODE_SOURCES:
        src = volume.get(source)
        if isinstance(src, dict):
            src.setdefault("defaultMode", 420)
            if source == "downwardAPI":
                for item in _dicts(src.get("items")):
                    _field_refs(item)
            if source == "projected":
                for projection in _dicts(src.get("sources")):
                    downward = projection.get("downwardAPI")
                    if isinstance(downward, dict):
                        for item in _dicts(downward.get("items")):
                            _field_refs(item)
                    token = projection.get("serviceAccountToken")
                    if isinstance(token, dict):
                        token.setdefault("expirationSeconds", 3600)
    host_path = volume.get("hostPath")
    if isinstance(host_path, dict):
        host_path.setdefault("type", "")
    iscsi = volume.get("iscsi")
    if isinstance(iscsi, dict):
        iscsi.setdefault("iscsiInterface", "default")
    rbd = volume.get("rbd")
    if isinstance(rbd, dict):
        rbd.setdefault("pool", "rbd")
        rbd.setdefault("user", "admin")
        rbd.setdefault("keyring", "/etc/ceph/keyring")
    azure_disk = volume.get("azureDisk")
    if isinstance(azure_disk, dict):
        azure_disk.setdefault("cachingMode", "ReadWrite")
        azure_disk.setdefault("fsType", "ext4")
        azure_disk.setdefault("readOnly", False)
        azure_disk.setdefault("kind", "Shared")


def _pod_spec(spec: Obj) -> None:
    _drop_zero(spec, _POD_SPEC_ZEROS)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    # The v1 conversion mirrors serviceAccountName into the deprecated serviceAccount.
    account = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if account:
        spec.setdefault("serviceAccountName", account)
        spec.setdefault("serviceAccount", account)
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in _dicts(spec.get(key)):
            _container(container)
    for volume in _dicts(spec.get("volumes")):
        _volume(volume)


def _pod_template(template: Obj) -> None:
    # ObjectMeta.creationTimestamp is a non-pointer metav1.Time: an unset one in a
    # template serialises as null, which every real server returns.
    meta = _map(template, "metadata")
    meta.setdefault("creationTimestamp", None)
    _pod_spec(_map(template, "spec"))


def _pod(obj: Obj, ctx: _Ctx) -> None:
    spec = _map(obj, "spec")
    _pod_spec(spec)
    spec.setdefault("enableServiceLinks", True)
    if spec.get("hostNetwork"):
        for key in ("containers", "initContainers"):
            for container in _dicts(spec.get(key)):
                for port in _dicts(container.get("ports")):
                    port.setdefault("hostPort", port.get("containerPort"))
    # Requests default to limits for each resource that has only a limit.
    for key in ("containers", "initContainers"):
        for container in _dicts(spec.get(key)):
            resources = container.get("resources")
            if isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
                limits = resources["limits"]
                if limits:
                    requests = _map(resources, "requests")
                    for name, quantity in limits.items():
                        requests.setdefault(name, quantity)
    if not ctx.server_assigned:
        return
    # Set by admission (ServiceAccount, Priority, DefaultTolerationSeconds) on a real server.
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = spec["tolerations"] = []
    if isinstance(tolerations, list):
        present = {t.get("key") for t in _dicts(tolerations)}
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if key not in present:
                tolerations.append(
                    {
                        "effect": "NoExecute",
                        "key": key,
                        "operator": "Exists",
                        "tolerationSeconds": 300,
                    }
                )
    status = _map(obj, "status")
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", qos_class(spec))


def qos_class(spec: Obj) -> str:
    """BestEffort, Burstable or Guaranteed from the containers' requests and limits."""
    containers = _dicts(spec.get("containers")) + _dicts(spec.get("initContainers"))
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        if requests or limits:
            any_set = True
        for name in ("cpu", "memory"):
            limit = limits.get(name)
            if limit is None or str(requests.get(name, limit)) != str(limit):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# --- workloads --------------------------------------------------------------------


def _deployment(obj: Obj, _ctx: _Ctx) -> None:
    spec = _map(obj, "spec")
    spec.setdefault("replicas", 1)
    strategy = _map(spec, "strategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _map(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    obj.setdefault("status", {})


def _replica_set(obj: Obj, _ctx: _Ctx) -> None:
    _map(obj, "spec").setdefault("replicas", 1)
    # ReplicaSetStatus.replicas has no omitempty.
    _map(obj, "status").setdefault("replicas", 0)


def _replication_controller(obj: Obj, _ctx: _Ctx) -> None:
    spec = _map(obj, "spec")
    spec.setdefault("replicas", 1)
    template = spec.get("template")
    # The v1 RC defaults its selector and labels from the template's labels.
    if isinstance(template, dict):
        labels = (template.get("metadata") or {}).get("labels")
        if labels:
            spec.setdefault("selector", dict(labels))
            meta = _map(obj, "metadata")
            if not meta.get("labels"):
                meta["labels"] = dict(labels)
    _map(obj, "status").setdefault("replicas", 0)


def _pvc_spec(spec: Obj) -> None:
    spec.setdefault("volumeMode", "Filesystem")
    _resources(spec.get("resources"))


def _stateful_set(obj: Obj, _ctx: _Ctx) -> None:
    spec = _map(obj, "spec")
    spec.setdefault("podManagementPolicy", "OrderedReady")
    update = _map(spec, "updateStrategy")
    if not update.get("type"):
        update["type"] = "RollingUpdate"
        update.setdefault("rollingUpdate", {})
    rolling = update.get("rollingUpdate")
    if update["type"] == "RollingUpdate" and isinstance(rolling, dict):
        # maxUnavailable is defaulted only behind the alpha MaxUnavailableStatefulSet gate.
        rolling.setdefault("partition", 0)
    retention = _map(spec, "persistentVolumeClaimRetentionPolicy")
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    for claim in _dicts(spec.get("volumeClaimTemplates")):
        # apps/v1 returns each claim template as a full PersistentVolumeClaim.
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        _map(claim, "metadata").setdefault("creationTimestamp", None)
        _pvc_spec(_map(claim, "spec"))
        _map(claim, "status").setdefault("phase", "Pending")
    # StatefulSetStatus.replicas and availableReplicas have no omitempty.
    status = _map(obj, "status")
    status.setdefault("replicas", 0)
    status.setdefault("availableReplicas", 0)


def _daemon_set(obj: Obj, _ctx: _Ctx) -> None:
    spec = _map(obj, "spec")
    update = _map(spec, "updateStrategy")
    update.setdefault("type", "RollingUpdate")
    if update["type"] == "RollingUpdate":
        rolling = _map(update, "rollingUpdate")
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    status = _map(obj, "status")
    for key in (
        "currentNumberScheduled",
        "numberMisscheduled",
        "desiredNumberScheduled",
        "numberReady",
    ):
        status.setdefault(key, 0)


_JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
_CONTROLLER_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")


def _job(obj: Obj, ctx: _Ctx) -> None:
    spec = _map(obj, "spec")
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    if "backoffLimit" not in spec:
        spec["backoffLimit"] = 2147483647 if "backoffLimitPerIndex" in spec else 6
    meta = _map(obj, "metadata")
    template_meta = _map(_map(spec, "template"), "metadata")
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    failure_policy = spec.get("podFailurePolicy")
    if isinstance(failure_policy, dict):
        for rule in _dicts(failure_policy.get("rules")):
            for pattern in _dicts(rule.get("onPodConditions")):
                pattern.setdefault("status", "True")
    spec.setdefault("podReplacementPolicy", "Failed" if failure_policy else "TerminatingOrFailed")
    # The job strategy (not defaulting) generates the selector and pod labels from the
    # uid unless manualSelector is true; without a uid yet there is nothing to name.
    uid = meta.get("uid")
    name = meta.get("name")
    if spec.get("manualSelector") is not True and uid and ctx.server_assigned:
        labels = _map(template_meta, "labels")
        for key in _JOB_NAME_LABELS:
            if name:
                labels.setdefault(key, name)
        for key in _CONTROLLER_UID_LABELS:
            labels.setdefault(key, uid)
        selector = _map(spec, "selector")
        _map(selector, "matchLabels").setdefault("batch.kubernetes.io/controller-uid", uid)
    # SetDefaults_Job copies the template's labels to a Job without labels. It runs again
    # whenever the server reads the Job back, by then with the generated labels, so a real
    # Job carries those too.
    if template_meta.get("labels") and not meta.get("labels"):
        meta["labels"] = dict(template_meta["labels"])
    obj.setdefault("status", {})


def _cron_job(obj: Obj, _ctx: _Ctx) -> None:
    spec = _map(obj, "spec")
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    # Job defaults (backoffLimit, completions...) belong to SetDefaults_Job, which takes a
    # Job: a CronJob's jobTemplate.spec does not get them; only its metadata is serialised.
    job_template = _map(spec, "jobTemplate")
    _map(job_template, "metadata").setdefault("creationTimestamp", None)
    obj.setdefault("status", {})


# --- core -------------------------------------------------------------------------


def _service(obj: Obj, ctx: _Ctx) -> None:
    spec = _map(obj, "spec")
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    spec.setdefault("type", "ClusterIP")
    svc_type = spec["type"]
    for port in _dicts(spec.get("ports")):
        port.setdefault("protocol", "TCP")
        if port.get("targetPort") in (None, 0, "") and "port" in port:
            port["targetPort"] = port["port"]
    externally_accessible = svc_type in ("NodePort", "LoadBalancer") or (
        svc_type == "ClusterIP" and bool(spec.get("externalIPs"))
    )
    if externally_accessible:
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if svc_type in ("NodePort", "LoadBalancer", "ClusterIP"):
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if svc_type == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if not ctx.server_assigned:
        return
    if svc_type != "ExternalName":
        # The service registry (not defaulting) allocates IPs and fills the family fields
        # of a single-stack IPv4 cluster; headless services get no IP.
        cluster_ip = spec.get("clusterIP")
        if not cluster_ip:
            ips = spec.get("clusterIPs")
            if isinstance(ips, list) and ips and isinstance(ips[0], str) and ips[0]:
                cluster_ip = ips[0]
            else:
                cluster_ip = ctx.allocate_cluster_ip()
            spec["clusterIP"] = cluster_ip
        if not spec.get("clusterIPs"):
            spec["clusterIPs"] = [cluster_ip]
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = ["IPv4"]
        if "ipFamilyPolicy" not in spec:
            # Headless services without a selector default to RequireDualStack, which a
            # single-stack cluster satisfies with its one family.
            selectorless_headless = cluster_ip == "None" and not spec.get("selector")
            spec["ipFamilyPolicy"] = "RequireDualStack" if selectorless_headless else "SingleStack"
    wants_node_ports = svc_type == "NodePort" or (
        svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False
    )
    if wants_node_ports:
        for port in _dicts(spec.get("ports")):
            if not port.get("nodePort"):
                port["nodePort"] = (
                    ctx.allocate_node_port()
                    if ctx.allocate_node_port
                    else default_node_port(obj, port)
                )
    if (
        svc_type == "LoadBalancer"
        and spec.get("externalTrafficPolicy") == "Local"
        and not spec.get("healthCheckNodePort")
    ):
        spec["healthCheckNodePort"] = (
            ctx.allocate_node_port()
            if ctx.allocate_node_port
            else default_node_port(obj, {"port": "health", "protocol": ""})
        )
    # ServiceStatus.loadBalancer is a non-pointer struct.
    _map(_map(obj, "status"), "loadBalancer")


def carry_over_allocations(old: Obj, new: Obj) -> None:
    """Keep a Service's allocated IPs and node ports across an update that omits them.

    A PUT or patch of a Service that leaves ``clusterIP``/``clusterIPs``/``nodePort``/
    ``healthCheckNodePort`` unset keeps the allocated values on a real server instead of
    allocating new ones (the registry's patchAllocatedValues). Call before ``apply_defaults``.
    """
    if _group_kind(new) != ("", "Service"):
        return
    old_spec = old.get("spec") or {}
    new_spec = new.get("spec")
    if not isinstance(new_spec, dict) or new_spec.get("type") == "ExternalName":
        return
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if not new_spec.get(key) and old_spec.get(key):
            new_spec[key] = clone_json(old_spec[key])
    if new_spec.get("type") in ("NodePort", "LoadBalancer"):
        old_ports = {
            (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
            for p in _dicts(old_spec.get("ports"))
        }
        for port in _dicts(new_spec.get("ports")):
            node_port = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
            if node_port and not port.get("nodePort"):
                port["nodePort"] = node_port
        if (
            old_spec.get("healthCheckNodePort")
            and not new_spec.get("healthCheckNodePort")
            and new_spec.get("externalTrafficPolicy") == "Local"
        ):
            new_spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


def clone_json(value: Any) -> Any:
    if type(value) is dict:
        return {k: clone_json(v) for k, v in value.items()}
    if type(value) is list:
        return [clone_json(v) for v in value]
    return value


def _namespace(obj: Obj, ctx: _Ctx) -> None:
    meta = _map(obj, "metadata")
    name = meta.get("name")
    if isinstance(name, str) and name:
        _map(meta, "labels")["kubernetes.io/metadata.name"] = name
    spec = _map(obj, "spec")
    if not spec.get("finalizers") and ctx.server_assigned:
        # The namespace strategy's PrepareForCreate, not defaulting.
        spec["finalizers"] = ["kubernetes"]
    _map(obj, "status").setdefault("phase", "Active")


def _pvc(obj: Obj, _ctx: _Ctx) -> None:
    _pvc_spec(_map(obj, "spec"))
    _map(obj, "status").setdefault("phase", "Pending")


def _secret(obj: Obj, _ctx: _Ctx) -> None:
    if not obj.get("type"):
        obj["type"] = "Opaque"
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = _map(obj, "data")
        for key, value in string_data.items():
            text = value if isinstance(value, str) else str(value)
            data[key] = base64.b64encode(text.encode()).decode()


def _endpoints(obj: Obj, _ctx: _Ctx) -> None:
    for subset in _dicts(obj.get("subsets")):
        for port in _dicts(subset.get("ports")):
            port.setdefault("protocol", "TCP")


def _limit_range(obj: Obj, _ctx: _Ctx) -> None:
    for item in _dicts((obj.get("spec") or {}).get("limits")):
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            _quantities(item.get(key))
        if item.get("type") != "Container":
            continue
        default = dict(item.get("default") or {})
        default_request = dict(item.get("defaultRequest") or {})
        for key, value in (item.get("max") or {}).items():
            default.setdefault(key, value)
        for key, value in default.items():
            default_request.setdefault(key, value)
        for key, value in (item.get("min") or {}).items():
            default_request.setdefault(key, value)
        # Empty Go maps are omitted, so only non-empty results appear.
        if default:
            item["default"] = default
        if default_request:
            item["defaultRequest"] = default_request


def _resource_quota(obj: Obj, _ctx: _Ctx) -> None:
    _quantities((obj.get("spec") or {}).get("hard"))
    obj.setdefault("status", {})


# --- other groups -----------------------------------------------------------------


def _network_policy(obj: Obj, _ctx: _Ctx) -> None:
    spec = _map(obj, "spec")
    _map(spec, "podSelector")
    for direction in ("ingress", "egress"):
        for rule in _dicts(spec.get(direction)):
            for port in _dicts(rule.get("ports")):
                port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types


def _ingress(obj: Obj, _ctx: _Ctx) -> None:
    # networking/v1 defines no Ingress defaults (pathType is required by validation);
    # ingressClassName comes only from a default IngressClass, which the simulator lacks.
    _map(_map(obj, "status"), "loadBalancer")


def _ingress_class(obj: Obj, _ctx: _Ctx) -> None:
    parameters = (obj.get("spec") or {}).get("parameters")
    if isinstance(parameters, dict):
        parameters.setdefault("scope", "Cluster")


def _hpa(obj: Obj, _ctx: _Ctx) -> None:
    if obj.get("apiVersion") != "autoscaling/v2":
        # autoscaling/v1 only defaults minReplicas; its CPU target stays unset.
        _map(obj, "spec").setdefault("minReplicas", 1)
        _map(obj, "status").setdefault("currentReplicas", 0)
        _map(obj, "status").setdefault("desiredReplicas", 0)
        return
    spec = _map(obj, "spec")
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80},
                },
            }
        ]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        behavior["scaleUp"] = _scaling_rules(
            behavior.get("scaleUp"),
            stabilization=0,
            policies=[
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        )
        # Scale-down stabilisation stays unset on purpose upstream: the controller's
        # --horizontal-pod-autoscaler-downscale-stabilization flag supplies it.
        behavior["scaleDown"] = _scaling_rules(
            behavior.get("scaleDown"),
            stabilization=None,
            policies=[{"type": "Percent", "value": 100, "periodSeconds": 15}],
        )
    # HorizontalPodAutoscalerStatus.desiredReplicas has no omitempty.
    _map(obj, "status").setdefault("desiredReplicas", 0)


def _scaling_rules(given: Any, *, stabilization: int | None, policies: list[Obj]) -> Obj:
    rules: Obj = dict(given) if isinstance(given, dict) else {}
    if rules.get("selectPolicy") is None:
        rules["selectPolicy"] = "Max"
    if rules.get("stabilizationWindowSeconds") is None and stabilization is not None:
        rules["stabilizationWindowSeconds"] = stabilization
    if rules.get("policies") is None:
        rules["policies"] = policies
    return rules


def _pdb(obj: Obj, _ctx: _Ctx) -> None:
    status = _map(obj, "status")
    for key in ("currentHealthy", "desiredHealthy", "disruptionsAllowed", "expectedPods"):
        status.setdefault(key, 0)


def _role_binding(obj: Obj, _ctx: _Ctx) -> None:
    role_ref = obj.get("roleRef")
    if isinstance(role_ref, dict) and not role_ref.get("apiGroup"):
        role_ref["apiGroup"] = GROUP_RBAC
    for subject in _dicts(obj.get("subjects")):
        if not subject.get("apiGroup"):
            if subject.get("kind") in ("User", "Group"):
                subject["apiGroup"] = GROUP_RBAC
            elif subject.get("kind") == "ServiceAccount":
                # The empty string is the value, and it is omitted on output.
                subject.pop("apiGroup", None)


def _crd(obj: Obj, _ctx: _Ctx) -> None:
    spec = _map(obj, "spec")
    names = _map(spec, "names")
    kind = names.get("kind")
    if isinstance(kind, str) and kind:
        names.setdefault("singular", kind.lower())
        names.setdefault("listKind", f"{kind}List")
    conversion = _map(spec, "conversion")
    conversion.setdefault("strategy", "None")
    webhook = conversion.get("webhook")
    if isinstance(webhook, dict):
        service = (webhook.get("clientConfig") or {}).get("service")
        if isinstance(service, dict):
            service.setdefault("port", 443)
    status = _map(obj, "status")
    if not status.get("storedVersions"):
        stored = [v.get("name") for v in _dicts(spec.get("versions")) if v.get("storage")]
        if stored:
            status["storedVersions"] = stored[:1]
    # CustomResourceDefinitionNames in status is a non-pointer struct with two required
    # (non-omitempty) strings; the naming controller fills them in later.
    accepted = _map(status, "acceptedNames")
    accepted.setdefault("kind", "")
    accepted.setdefault("plural", "")


def _nothing(obj: Obj, _ctx: _Ctx) -> None:
    """Kinds a real server serves without defaults of their own."""


_Handler = Callable[[Obj, _Ctx], None]

_HANDLERS: dict[tuple[str, str], _Handler] = {
    ("", "Pod"): _pod,
    ("", "PodTemplate"): _nothing,
    ("", "ReplicationController"): _replication_controller,
    ("", "Namespace"): _namespace,
    ("", "Service"): _service,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Secret"): _secret,
    ("", "ConfigMap"): _nothing,
    ("", "ServiceAccount"): _nothing,
    ("", "Endpoints"): _endpoints,
    ("", "Event"): _nothing,
    ("", "ResourceQuota"): _resource_quota,
    ("", "LimitRange"): _limit_range,
    ("apps", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replica_set,
    ("apps", "StatefulSet"): _stateful_set,
    ("apps", "DaemonSet"): _daemon_set,
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cron_job,
    ("networking.k8s.io", "Ingress"): _ingress,
    ("networking.k8s.io", "IngressClass"): _ingress_class,
    ("networking.k8s.io", "NetworkPolicy"): _network_policy,
    ("autoscaling", "HorizontalPodAutoscaler"): _hpa,
    ("policy", "PodDisruptionBudget"): _pdb,
    (GROUP_RBAC, "Role"): _nothing,
    (GROUP_RBAC, "ClusterRole"): _nothing,
    (GROUP_RBAC, "RoleBinding"): _role_binding,
    (GROUP_RBAC, "ClusterRoleBinding"): _role_binding,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
}
