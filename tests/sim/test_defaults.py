"""Defaulting: a manifest comes back as a real kube-apiserver (1.30+) returns it.

The expected objects are written by hand from the API reference and from real
``kubectl get -o yaml`` output (metadata the server assigns is left out: the simulator's
store sets uid, resourceVersion, creationTimestamp and generation).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.sim.defaults import apply_defaults, carry_over_allocations


def _ips() -> Callable[[], str]:
    counter = itertools.count(10)
    return lambda: f"10.96.0.{next(counter)}"


def _ports() -> Callable[[], int]:
    counter = itertools.count(30080)
    return lambda: next(counter)


def _defaulted(manifest: str) -> dict[str, Any]:
    obj = yaml.safe_load(manifest)
    apply_defaults(obj, allocate_cluster_ip=_ips(), allocate_node_port=_ports())
    return obj


def _same(actual: dict[str, Any], expected_yaml: str) -> None:
    assert actual == yaml.safe_load(expected_yaml)


CONTAINER_DEFAULTS = """
        imagePullPolicy: IfNotPresent
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
"""


def test_a_deployment_gets_what_a_real_server_returns() -> None:
    obj = _defaulted(
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx-deployment, labels: {app: nginx}}
spec:
  replicas: 3
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports: [{containerPort: 80}]
        livenessProbe: {httpGet: {path: /healthz, port: 80}}
"""
    )
    _same(
        obj,
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx-deployment, labels: {app: nginx}}
spec:
  progressDeadlineSeconds: 600
  replicas: 3
  revisionHistoryLimit: 10
  selector: {matchLabels: {app: nginx}}
  strategy:
    rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}
    type: RollingUpdate
  template:
    metadata:
      creationTimestamp: null
      labels: {app: nginx}
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        imagePullPolicy: IfNotPresent
        livenessProbe:
          failureThreshold: 3
          httpGet: {path: /healthz, port: 80, scheme: HTTP}
          periodSeconds: 10
          successThreshold: 1
          timeoutSeconds: 1
        ports: [{containerPort: 80, protocol: TCP}]
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
      dnsPolicy: ClusterFirst
      restartPolicy: Always
      schedulerName: default-scheduler
      securityContext: {}
      terminationGracePeriodSeconds: 30
status: {}
""",
    )


def test_a_recreate_deployment_gets_no_rolling_update_block() -> None:
    obj = _defaulted(
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  strategy: {type: Recreate}
  selector: {matchLabels: {app: d}}
  template: {metadata: {labels: {app: d}}, spec: {containers: [{name: c, image: busybox}]}}
"""
    )
    assert obj["spec"]["strategy"] == {"type": "Recreate"}
    assert obj["spec"]["replicas"] == 1


def test_a_cluster_ip_service_gets_its_ip_families_and_target_ports() -> None:
    obj = _defaulted(
        """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: metrics, port: 9090}
"""
    )
    _same(
        obj,
        """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  - {name: metrics, port: 9090, protocol: TCP, targetPort: 9090}
  selector: {app: web}
  sessionAffinity: None
  type: ClusterIP
status:
  loadBalancer: {}
""",
    )


def test_a_load_balancer_service_gets_node_ports_and_traffic_policies() -> None:
    obj = _defaulted(
        """
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 443, targetPort: https}]
"""
    )
    _same(
        obj,
        """
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  allocateLoadBalancerNodePorts: true
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  externalTrafficPolicy: Cluster
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports: [{nodePort: 30080, port: 443, protocol: TCP, targetPort: https}]
  selector: {app: web}
  sessionAffinity: None
  type: LoadBalancer
status:
  loadBalancer: {}
""",
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]},
            {"clusterIPs": ["None"], "ipFamilyPolicy": "SingleStack"},
        ),
        (
            {"clusterIP": "None", "ports": [{"port": 5432}]},
            {"clusterIPs": ["None"], "ipFamilyPolicy": "RequireDualStack"},
        ),
        (
            {"type": "NodePort", "ports": [{"port": 80, "nodePort": 31000}]},
            {"externalTrafficPolicy": "Cluster", "clusterIP": "10.96.0.10"},
        ),
    ],
    ids=["headless with selector", "headless without selector", "node port kept"],
)
def test_service_variants(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": spec}
    apply_defaults(obj, allocate_cluster_ip=_ips(), allocate_node_port=_ports())
    for key, value in expected.items():
        assert obj["spec"][key] == value
    if spec.get("type") == "NodePort":
        assert obj["spec"]["ports"][0]["nodePort"] == 31000


def test_an_external_name_service_gets_no_cluster_ip() -> None:
    obj = _defaulted(
        """
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: example.com}
"""
    )
    assert obj["spec"] == {
        "type": "ExternalName",
        "externalName": "example.com",
        "sessionAffinity": "None",
    }


def test_an_update_keeps_the_allocated_cluster_ip_and_node_ports() -> None:
    old = _defaulted(
        """
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {type: NodePort, ports: [{port: 80}]}
"""
    )
    new = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    new["spec"] = {"type": "NodePort", "ports": [{"port": 80}]}
    carry_over_allocations(old, new)
    apply_defaults(new, allocate_cluster_ip=lambda: "10.0.0.99", allocate_node_port=lambda: 1)
    assert new["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    assert new["spec"]["ports"][0]["nodePort"] == old["spec"]["ports"][0]["nodePort"]


def test_a_job_gets_its_selector_and_labels_from_its_uid() -> None:
    obj = _defaulted(
        """
apiVersion: batch/v1
kind: Job
metadata: {name: pi, namespace: default, uid: c9948307-e56d-4b5d-8302-ae2d7b7da67c}
spec:
  backoffLimit: 4
  template:
    spec:
      containers:
      - name: pi
        image: perl:5.34.0
        command: [perl, -Mbignum=bpi, -wle, print bpi(2000)]
      restartPolicy: Never
"""
    )
    uid = "c9948307-e56d-4b5d-8302-ae2d7b7da67c"
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": "pi",
        "controller-uid": uid,
        "job-name": "pi",
    }
    expected = yaml.safe_load(
        f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: pi, namespace: default, uid: {uid}}}
spec:
  backoffLimit: 4
  completionMode: NonIndexed
  completions: 1
  parallelism: 1
  podReplacementPolicy: TerminatingOrFailed
  selector:
    matchLabels: {{batch.kubernetes.io/controller-uid: {uid}}}
  suspend: false
  template:
    metadata:
      creationTimestamp: null
    spec:
      containers:
      - name: pi
        image: perl:5.34.0
        command: [perl, -Mbignum=bpi, -wle, print bpi(2000)]
{CONTAINER_DEFAULTS}
      dnsPolicy: ClusterFirst
      restartPolicy: Never
      schedulerName: default-scheduler
      securityContext: {{}}
      terminationGracePeriodSeconds: 30
status: {{}}
"""
    )
    expected["metadata"]["labels"] = labels
    expected["spec"]["template"]["metadata"]["labels"] = labels
    assert obj == expected


def test_a_job_with_a_manual_selector_or_a_failure_policy() -> None:
    obj = _defaulted(
        """
apiVersion: batch/v1
kind: Job
metadata: {name: j, uid: u1}
spec:
  manualSelector: true
  selector: {matchLabels: {a: b}}
  parallelism: 3
  podFailurePolicy: {rules: [{action: FailJob, onPodConditions: [{type: DisruptionTarget}]}]}
  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: x}], restartPolicy: Never}}
"""
    )
    spec = obj["spec"]
    assert spec["selector"] == {"matchLabels": {"a": "b"}}
    assert "completions" not in spec
    assert spec["podReplacementPolicy"] == "Failed"
    assert spec["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"] == "True"
    assert obj["metadata"]["labels"] == {"a": "b"}


def test_a_cron_job_defaults_its_schedule_policy_but_not_its_job_spec() -> None:
    obj = _defaulted(
        """
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - {name: hello, image: busybox:1.28, command: [date]}
          restartPolicy: OnFailure
"""
    )
    _same(
        obj,
        f"""
apiVersion: batch/v1
kind: CronJob
metadata: {{name: hello}}
spec:
  concurrencyPolicy: Allow
  failedJobsHistoryLimit: 1
  jobTemplate:
    metadata: {{creationTimestamp: null}}
    spec:
      template:
        metadata: {{creationTimestamp: null}}
        spec:
          containers:
          - name: hello
            image: busybox:1.28
            command: [date]
{CONTAINER_DEFAULTS.replace("        ", "            ")}
          dnsPolicy: ClusterFirst
          restartPolicy: OnFailure
          schedulerName: default-scheduler
          securityContext: {{}}
          terminationGracePeriodSeconds: 30
  schedule: "* * * * *"
  successfulJobsHistoryLimit: 3
  suspend: false
status: {{}}
""",
    )


def test_a_stateful_set_returns_full_claim_templates() -> None:
    obj = _defaulted(
        """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.8
        volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"""
    )
    _same(
        obj,
        f"""
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  persistentVolumeClaimRetentionPolicy: {{whenDeleted: Retain, whenScaled: Retain}}
  podManagementPolicy: OrderedReady
  replicas: 1
  revisionHistoryLimit: 10
  selector: {{matchLabels: {{app: nginx}}}}
  serviceName: nginx
  template:
    metadata:
      creationTimestamp: null
      labels: {{app: nginx}}
    spec:
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.8
        volumeMounts: [{{name: www, mountPath: /usr/share/nginx/html}}]
{CONTAINER_DEFAULTS}
      dnsPolicy: ClusterFirst
      restartPolicy: Always
      schedulerName: default-scheduler
      securityContext: {{}}
      terminationGracePeriodSeconds: 30
  updateStrategy:
    rollingUpdate: {{partition: 0}}
    type: RollingUpdate
  volumeClaimTemplates:
  - apiVersion: v1
    kind: PersistentVolumeClaim
    metadata: {{creationTimestamp: null, name: www}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
      volumeMode: Filesystem
    status: {{phase: Pending}}
status: {{availableReplicas: 0, replicas: 0}}
""",
    )


def test_a_daemon_set_gets_its_rolling_update_numbers() -> None:
    obj = _defaulted(
        """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template: {metadata: {labels: {app: agent}}, spec: {containers: [{name: a, image: agent:1}]}}
"""
    )
    assert obj["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    assert obj["spec"]["revisionHistoryLimit"] == 10


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("localhost:5000/team/app", "Always"),
        ("localhost:5000/team/app:v2", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:latest@sha256:" + "a" * 64, "Always"),
    ],
)
def test_image_pull_policy_follows_the_tag(image: str, policy: str) -> None:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "r"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
    }
    apply_defaults(obj, allocate_cluster_ip=_ips())
    assert obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_a_pod_gets_admission_defaults_and_its_qos_class() -> None:
    obj = _defaulted(
        """
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: c
    image: app:1
    resources: {limits: {cpu: 500m, memory: 128Mi}}
"""
    )
    spec = obj["spec"]
    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "128Mi"}
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert [t["key"] for t in spec["tolerations"]] == [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    assert obj["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}


def test_pod_template_volumes_and_env_references() -> None:
    obj = _defaulted(
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    spec:
      containers:
      - name: c
        image: app:1
        env:
        - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory}}}
      volumes:
      - {name: scratch}
      - {name: cfg, configMap: {name: cfg}}
      - {name: host, hostPath: {path: /var/log}}
"""
    )
    spec = obj["spec"]["template"]["spec"]
    env = spec["containers"][0]["env"]
    assert env[0]["valueFrom"]["fieldRef"] == {"apiVersion": "v1", "fieldPath": "spec.nodeName"}
    assert env[1]["valueFrom"]["resourceFieldRef"] == {"divisor": "0", "resource": "limits.memory"}
    assert spec["volumes"] == [
        {"name": "scratch", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}},
        {"name": "host", "hostPath": {"path": "/var/log", "type": ""}},
    ]


def test_a_namespace_gets_its_name_label_finalizer_and_phase() -> None:
    obj = _defaulted("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n")
    _same(
        obj,
        """
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  labels: {kubernetes.io/metadata.name: team-a}
spec: {finalizers: [kubernetes]}
status: {phase: Active}
""",
    )


def test_a_secret_folds_string_data_into_base64_data() -> None:
    obj = _defaulted(
        """
apiVersion: v1
kind: Secret
metadata: {name: s}
data: {a: YQ==}
stringData: {b: hello, a: override}
"""
    )
    assert obj == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "type": "Opaque",
        "data": {"a": "b3ZlcnJpZGU=", "b": "aGVsbG8="},
    }


@pytest.mark.parametrize(
    ("manifest", "path", "expected"),
    [
        (
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\n"
            "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}",
            ("spec", "volumeMode"),
            "Filesystem",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\n"
            "spec: {podSelector: {}, egress: [{ports: [{port: 53}]}]}",
            ("spec", "policyTypes"),
            ["Ingress", "Egress"],
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\n"
            "spec: {podSelector: {}, egress: [{ports: [{port: 53}]}]}",
            ("spec", "egress"),
            [{"ports": [{"port": 53, "protocol": "TCP"}]}],
        ),
        (
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\n"
            "spec: {maxReplicas: 5, scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}}",
            ("spec", "metrics"),
            [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        ),
        (
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\n"
            "spec: {maxReplicas: 5, behavior: {scaleDown: {stabilizationWindowSeconds: 60}}}",
            ("spec", "behavior"),
            {
                "scaleUp": {
                    "selectPolicy": "Max",
                    "stabilizationWindowSeconds": 0,
                    "policies": [
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                        {"type": "Percent", "value": 100, "periodSeconds": 15},
                    ],
                },
                "scaleDown": {
                    "selectPolicy": "Max",
                    "stabilizationWindowSeconds": 60,
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                },
            },
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b}\n"
            "roleRef: {kind: Role, name: r}\nsubjects: [{kind: User, name: alice}]",
            ("subjects",),
            [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        ),
        (
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
            "metadata: {name: widgets.example.com}\n"
            "spec: {group: example.com, scope: Namespaced, names: {kind: Widget, plural: widgets},"
            " versions: [{name: v1, served: true, storage: true}]}",
            ("spec",),
            {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {
                    "kind": "Widget",
                    "plural": "widgets",
                    "singular": "widget",
                    "listKind": "WidgetList",
                },
                "versions": [{"name": "v1", "served": True, "storage": True}],
                "conversion": {"strategy": "None"},
            },
        ),
        (
            "apiVersion: v1\nkind: LimitRange\nmetadata: {name: l}\n"
            "spec: {limits: [{type: Container, max: {cpu: '2'}, min: {memory: 64Mi}}]}",
            ("spec", "limits"),
            [
                {
                    "type": "Container",
                    "max": {"cpu": "2"},
                    "min": {"memory": "64Mi"},
                    "default": {"cpu": "2"},
                    "defaultRequest": {"cpu": "2", "memory": "64Mi"},
                }
            ],
        ),
    ],
    ids=[
        "pvc volumeMode",
        "networkpolicy policyTypes",
        "networkpolicy port protocol",
        "hpa v2 default metric",
        "hpa v2 behavior",
        "rbac subject apiGroup",
        "crd names and conversion",
        "limitrange defaults",
    ],
)
def test_other_kinds(manifest: str, path: tuple[str, ...], expected: Any) -> None:
    value: Any = _defaulted(manifest)
    for key in path:
        value = value[key]
    assert value == expected


def test_custom_resources_and_config_maps_are_left_alone() -> None:
    for manifest in (
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {replicas: null}",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}",
    ):
        obj = yaml.safe_load(manifest)
        before = copy.deepcopy(obj)
        apply_defaults(obj, allocate_cluster_ip=_ips())
        assert obj == before


MANIFESTS = [
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: [{name: c, image: IMG, ports: [{containerPort: 80}]}]}}}",
    "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\nspec: {template: {spec: {containers: [{name: c, image: IMG}]}}, volumeClaimTemplates: [{metadata: {name: v}, spec: {}}]}",
    "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: s}\nspec: {template: {spec: {containers: [{name: c, image: IMG}]}}}",
    "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j, uid: u}\nspec: {template: {spec: {containers: [{name: c, image: IMG}]}}}",
    "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: j}\nspec: {jobTemplate: {spec: {template: {spec: {containers: [{name: c, image: IMG}]}}}}}",
    "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 80}]}",
    "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {hostNetwork: true, containers: [{name: c, image: IMG, ports: [{containerPort: 80}]}]}",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}",
    "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {a: IMG}",
    "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\nspec: {behavior: {}}",
]


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(MANIFESTS),
    st.from_regex(r"[a-z]{1,5}(:[a-z0-9.]{1,6})?(@sha256:[a-f0-9]{8})?", fullmatch=True),
)
def test_defaulting_is_idempotent(manifest: str, image: str) -> None:
    obj = yaml.safe_load(manifest.replace("IMG", image))
    apply_defaults(obj, allocate_cluster_ip=_ips(), allocate_node_port=_ports())
    once = copy.deepcopy(obj)
    apply_defaults(obj, allocate_cluster_ip=_ips(), allocate_node_port=_ports())
    assert obj == once


@pytest.mark.parametrize(
    ("manifest", "absent"),
    [
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}",
            "clusterIP",
        ),
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: n}", "finalizers"),
        (
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j, uid: u}\n"
            "spec: {template: {spec: {containers: [{name: c, image: x}]}}}",
            "selector",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}",
            "tolerations",
        ),
    ],
)
def test_decoding_defaults_leave_out_what_registry_and_admission_set(
    manifest: str, absent: str
) -> None:
    obj = yaml.safe_load(manifest)
    apply_defaults(obj, allocate_cluster_ip=_ips(), server_assigned=False)
    assert absent not in obj["spec"]
    apply_defaults(obj, allocate_cluster_ip=_ips())
    assert absent in obj["spec"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("1000m", "1"),
        ("0.5", "500m"),
        ("2000", "2k"),
        ("1.5", "1500m"),
        ("100m", "100m"),
        ("0.1m", "100u"),
        (1, "1"),
        (0.25, "250m"),
        ("0", "0"),
        ("1024Mi", "1Gi"),
        ("0.5Gi", "512Mi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Ki", "512"),
        ("123Mi", "123Mi"),
        ("128974848", "128974848"),
        ("129e6", "129e6"),
        ("1e3", "1e3"),
        ("not-a-quantity", "not-a-quantity"),
    ],
)
def test_resource_quantities_are_stored_in_canonical_form(given: Any, stored: str) -> None:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "c", "image": "x:1", "resources": {"limits": {"cpu": given}}}
                    ]
                }
            }
        },
    }
    apply_defaults(obj, allocate_cluster_ip=_ips())
    assert obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == stored


def test_quota_claim_and_limit_range_quantities_are_canonical_too() -> None:
    quota = _defaulted(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec: {hard: {cpu: '4000m', memory: 2048Mi}}"
    )
    claim = _defaulted(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\n"
        "spec: {resources: {requests: {storage: 1024Mi}}}"
    )
    limits = _defaulted(
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: l}\n"
        "spec: {limits: [{type: Container, max: {cpu: '2000m'}}]}"
    )
    assert quota["spec"]["hard"] == {"cpu": "4", "memory": "2Gi"}
    assert claim["spec"]["resources"]["requests"] == {"storage": "1Gi"}
    assert limits["spec"]["limits"][0]["default"] == {"cpu": "2"}


def test_zero_values_of_omitempty_fields_disappear_like_through_go_types() -> None:
    obj = _defaulted(
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, labels: {}, annotations: null}
spec:
  template:
    spec:
      hostNetwork: false
      tolerations: []
      containers:
      - name: c
        image: app:1
        tty: false
        args: []
        volumeMounts: [{name: v, mountPath: /v, readOnly: false}]
        ports: [{containerPort: 80, hostPort: 0}]
      volumes: [{name: v, csi: {driver: d, readOnly: false}}]
"""
    )
    assert obj["metadata"] == {"name": "d"}
    spec = obj["spec"]["template"]["spec"]
    assert "hostNetwork" not in spec and "tolerations" not in spec
    container = spec["containers"][0]
    assert "tty" not in container and "args" not in container
    assert container["volumeMounts"] == [{"name": "v", "mountPath": "/v"}]
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    # A pointer field keeps its false.
    assert spec["volumes"][0]["csi"]["readOnly"] is False
