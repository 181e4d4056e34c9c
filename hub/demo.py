"""``hub demo``: the whole GitOps story on simulated clusters, narrated and checked.

The demo uses only public entry points, as a newcomer would: an in-process ``hub sim``
(``clusters.sim.SimServer``), the ``hub`` CLI as subprocesses (``init``, ``cluster add``,
``source add``, ``appset generate``, ``status``, ``cluster rm``), ``hub serve`` as a
subprocess, ``git`` for commits and the real ``kubectl`` for the clusters' state. Every
step states an expectation and checks it against the clusters and the hub's store; the
result is a ``DemoReport``. Nothing here talks to a cluster behind the hub's back except
the one ``kubectl scale`` that step 3 uses to cause drift.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hub.apps import AppRecord, AppStore
from hub.errors import HubError, HubUsageError
from hub.home import open_store
from hub.ports import free_port
from hub.sync.model import declared_source_specs

T = TypeVar("T")

DEFAULT_CLUSTERS = ("dev", "staging", "prod-us-east", "prod-eu-west")
# The repoURL the examples are written with; the demo rewrites it to its own repository.
PLACEHOLDER_REPO = "https://git.example.com/platform/gitops-examples.git"
SOURCE_NAME = "examples"
PAYMENTS_KUSTOMIZATION = "apps/payments/base/kustomization.yaml"
PAYMENTS_IMAGE = "registry.example.com/payments"
MIGRATE_IMAGE = "registry.example.com/payments-migrate"
# Phases in the order a sync runs them (hooks of PreSync first, PostSync last).
PHASE_ORDER = {"PreSync": 0, "Sync": 1, "PostSync": 2}
# Environment variables that would let the machine's own hub or kubeconfig leak in.
_CLEAN_ENV = ("HUB_HOME", "HUB_MASTER_KEY", "HUB_NEW_MASTER_KEY", "KUBECONFIG")
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "hub demo",
    "GIT_AUTHOR_EMAIL": "demo@gitops-hub.invalid",
    "GIT_COMMITTER_NAME": "hub demo",
    "GIT_COMMITTER_EMAIL": "demo@gitops-hub.invalid",
}


class DemoError(HubError):
    """The demo could not set itself up (a missing tool, a CLI call that failed)."""


class StepFailed(Exception):
    """An expectation of the current step did not hold; the message says which."""


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """A demo cluster and the labels it is registered with."""

    name: str
    env: str
    region: str

    @property
    def labels(self) -> dict[str, str]:
        return {"env": self.env, "region": self.region}


def cluster_specs(names: Sequence[str]) -> tuple[ClusterSpec, ...]:
    """Parse ``--clusters``: each name says its environment by its prefix.

    ``dev*`` -> env=dev, ``staging*``/``stage*`` -> env=staging, ``prod*`` -> env=production;
    the region is what follows ``prod-`` (``prod-eu-west`` -> eu-west), else us-east.
    """
    specs: list[ClusterSpec] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name.startswith("dev"):
            env = "dev"
        elif name.startswith(("staging", "stage")):
            env = "staging"
        elif name.startswith("prod"):
            env = "production"
        else:
            raise HubUsageError(
                f"--clusters: cannot tell the environment of {name!r}: start each name with "
                "dev, staging or prod (e.g. dev,staging,prod-us-east)"
            )
        region = name.split("-", 1)[1] if env == "production" and "-" in name else "us-east"
        specs.append(ClusterSpec(name=name, env=env, region=region))
    if not specs:
        raise HubUsageError("--clusters: name at least one cluster")
    if len({s.name for s in specs}) != len(specs):
        raise HubUsageError("--clusters: a cluster is named twice")
    if "dev" not in {s.name for s in specs}:
        raise HubUsageError(
            "--clusters: include a cluster named 'dev' (examples/appsets/apps-dev.yaml "
            "deploys every app there)"
        )
    if len(specs) < 2:
        raise HubUsageError("--clusters: name at least two clusters (step 6 removes one)")
    return tuple(specs)


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    clusters: tuple[ClusterSpec, ...]
    examples: Path
    keep: bool = False
    fast: bool = False
    port: int = 0  # 0: any free port

    @property
    def ready_delay(self) -> float:
        """Seconds a simulated pod takes to become Ready."""
        return 0.2 if self.fast else 0.5

    @property
    def git_poll(self) -> float:
        return 2.0 if self.fast else 3.0

    @property
    def pause(self) -> float:
        """A breath between steps so a reader can follow; none with --fast."""
        return 0.0 if self.fast else 1.0

    @property
    def step_timeout(self) -> float:
        return 90.0 if self.fast else 150.0


@dataclass(frozen=True, kw_only=True)
class StepResult:
    number: int
    title: str
    ok: bool
    detail: str
    seconds: float


@dataclass(frozen=True, kw_only=True)
class DemoReport:
    steps: tuple[StepResult, ...]
    planned: int

    @property
    def ok(self) -> bool:
        return len(self.steps) == self.planned and all(s.ok for s in self.steps)

    @property
    def failed(self) -> list[StepResult]:
        return [s for s in self.steps if not s.ok]


def default_examples() -> Path:
    """examples/ of the source tree this package runs from."""
    return Path(__file__).resolve().parent.parent / "examples"


def wait_until(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy, else fail the step naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise StepFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _image_tag(image: str) -> str:
    return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"


def set_image_tag(kustomization: str, image: str, tag: str) -> str:
    """``kustomization`` with ``newTag`` of ``images[name=image]`` set to ``tag``.

    Edits the line in place (rather than re-dumping the YAML) so the commit's diff is the
    one line a person would change and the file's comments stay.
    """
    lines = kustomization.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() in (f"- name: {image}", f"name: {image}"):
            for j in range(i + 1, min(i + 4, len(lines))):
                stripped = lines[j].lstrip()
                if stripped.startswith("newTag:"):
                    indent = lines[j][: len(lines[j]) - len(stripped)]
                    lines[j] = f"{indent}newTag: {tag}\n"
                    return "".join(lines)
    raise DemoError(f"{PAYMENTS_KUSTOMIZATION}: no images entry with name {image} and a newTag")


# ---------------------------------------------------------------- the outside world


class Tools:
    """Subprocess helpers: the ``hub`` CLI on the demo's home, git, kubectl."""

    def __init__(self, root: Path, home: Path, repo: Path, kubeconfig: Path) -> None:
        self.root = root
        self.home = home
        self.repo = repo
        self.kubeconfig = kubeconfig
        self.env = {k: v for k, v in os.environ.items() if k not in _CLEAN_ENV}
        self.env.update(_GIT_IDENTITY)
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise DemoError("kubectl is not on PATH; the demo checks the clusters with it")
        self.kubectl_bin = kubectl
        if shutil.which("git") is None:
            raise DemoError("git is not on PATH; the demo commits to a Git repository")

    def _run(
        self, args: Sequence[str], *, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), capture_output=True, text=True, env=self.env, cwd=cwd, timeout=120
        )

    def hub(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = self._run([sys.executable, "-m", "hub", "--home", str(self.home), *args])
        if check and done.returncode != 0:
            raise DemoError(
                f"`hub {' '.join(args)}` exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
            )
        return done

    def git(self, *args: str) -> str:
        done = self._run(["git", *args], cwd=self.repo)
        if done.returncode != 0:
            raise DemoError(f"`git {' '.join(args)}` failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def commit(self, files: dict[str, str], message: str) -> str:
        for rel, text in files.items():
            (self.repo / rel).write_text(text)
        self.git("add", "--", *files)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def revert_head(self) -> str:
        self.git("revert", "--no-edit", "HEAD")
        return self.git("rev-parse", "HEAD")

    def kubectl(self, cluster: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), "--context", cluster, *args]
        )

    def get_json(self, cluster: str, *args: str) -> dict[str, Any] | None:
        done = self.kubectl(cluster, "get", *args, "-o", "json")
        if done.returncode != 0:
            return None
        value = json.loads(done.stdout)
        return value if isinstance(value, dict) else None


# ---------------------------------------------------------------- the scenario


class Demo:
    """One run: set up, the six steps, tear down (unless kept)."""

    def __init__(self, options: DemoOptions, out: Callable[[str], None] = print) -> None:
        self.options = options
        self.out = out
        self.root = Path(tempfile.mkdtemp(prefix="hub-demo-"))
        self.home = self.root / "home"
        self.repo = self.root / "gitops"
        self.log_path = self.root / "hub-serve.log"
        self.port = options.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sim: Any = None
        self.proc: subprocess.Popen[str] | None = None
        self.tools: Tools | None = None
        self.expected: list[str] = []
        self.payments: list[str] = []
        self.results: list[StepResult] = []

    # ------------------------------------------------------------ set-up and tear-down

    @property
    def t(self) -> Tools:
        assert self.tools is not None, "setup() first"
        return self.tools

    def setup(self) -> None:
        from clusters.sim import SimServer

        names = [c.name for c in self.options.clusters]
        self.out(f"Starting {len(names)} simulated clusters: {', '.join(names)}")
        self.sim = SimServer(
            clusters=names,
            ready_delay=self.options.ready_delay,
            kubeconfig_path=self.root / "sim.kubeconfig",
        ).start()
        self.tools = Tools(self.root, self.home, self.repo, Path(self.sim.kubeconfig_path))
        self._init_repo()
        self.out(f"Git repository from examples/ at {self.repo}")
        self.t.hub("init")
        for c in self.options.clusters:
            labels = [a for k, v in c.labels.items() for a in ("--label", f"{k}={v}")]
            self.t.hub(
                "cluster", "add", c.name, "--kubeconfig", str(self.t.kubeconfig),
                "--context", c.name, *labels,
            )  # fmt: skip
            self.out(f"  hub cluster add {c.name} --label env={c.env} --label region={c.region}")
        self.t.hub("source", "add", SOURCE_NAME, "--repo", str(self.repo), "--path", "appsets")
        self.out(f"  hub source add {SOURCE_NAME} --repo {self.repo} --path appsets")
        self.expected = self._expected_apps()
        self.out(f"The ApplicationSets generate {len(self.expected)} Applications")
        self._start_hub()

    def _init_repo(self) -> None:
        examples = self.options.examples
        if not (examples / "appsets").is_dir():
            raise DemoError(f"{examples}: not the examples/ directory (no appsets/ in it)")
        shutil.copytree(examples, self.repo)
        for path in sorted(self.repo.rglob("*.yaml")):
            text = path.read_text()
            if PLACEHOLDER_REPO in text:
                path.write_text(text.replace(PLACEHOLDER_REPO, str(self.repo)))
        self.t.git("init", "-q", "-b", "main")
        self.t.git("add", "-A")
        self.t.git("commit", "-q", "-m", "gitops repository from gitops-hub examples/")

    def _expected_apps(self) -> list[str]:
        # The hub writes nothing for a set with an invalid Application, e.g. one whose
        # destination is not registered (the list generator names clusters a custom
        # --clusters may not have); so does the demo.
        targets = {c.name for c in self.options.clusters} | {
            self.sim.server_url(c.name) for c in self.options.clusters
        }
        names: list[str] = []
        for path in sorted((self.repo / "appsets").glob("*.yaml")):
            done = self.t.hub(
                "appset", "generate", str(path), "--repo", str(self.repo), "-o", "json",
                check=False,
            )  # fmt: skip
            # Exit 1 with Applications on stdout: some were invalid (the hub then writes
            # none of the set). Nothing on stdout: the set is broken.
            if done.returncode not in (0, 1) or not done.stdout.strip():
                raise DemoError(f"hub appset generate {path.name}: {done.stderr.strip()}")
            apps = json.loads(done.stdout)
            if done.returncode == 0 and all(_destination(app) in targets for app in apps):
                names += [app["metadata"]["name"] for app in apps]
        return sorted(names)

    def _start_hub(self) -> None:
        args = [
            sys.executable, "-m", "hub", "--home", str(self.home), "-v", "serve",
            "--port", str(self.port), "--git-poll", str(self.options.git_poll),
            "--resync", "30",
        ]  # fmt: skip
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, text=True, env=self.t.env
            )
        self.out(f"Started `hub serve` (pid {self.proc.pid}) on http://127.0.0.1:{self.port}/")

    def stop_hub(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        try:
            self.stop_hub()
        finally:
            try:
                if self.sim is not None:
                    self.sim.stop()
            finally:
                shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ observation

    def apps(self) -> dict[str, AppRecord]:
        store = open_store(self.home)
        try:
            return {a.name: a for a in AppStore(store).list_apps()}
        finally:
            store.close()

    def head(self) -> str:
        return self.t.git("rev-parse", "HEAD")

    def notify_push(self) -> None:
        """Tell the hub about the commit at once (a GitHub-style push webhook); the short
        --git-poll covers a webhook that does not arrive."""
        body = json.dumps({"repository": {"clone_url": str(self.repo)}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/webhook/git",
            data=body,
            headers={"Content-Type": "application/json", "X-GitHub-Event": "push"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5):
                pass
        except OSError:
            pass

    def status(self) -> None:
        # --server although hub serve records itself in serve.json: a demo whose hub has
        # died must show that (an error), not quietly fall back to reading the store.
        done = self.t.hub("status", "--server", self.url, check=False)
        text = done.stdout if done.returncode in (0, 3) else done.stderr
        for line in text.rstrip().splitlines():
            self.out(f"    {line}")

    def all_synced_healthy(self, sha: str | None = None) -> bool:
        apps = self.apps()
        for name in self.expected:
            a = apps.get(name)
            if a is None or (a.sync_status, a.health_status) != ("Synced", "Healthy"):
                return False
            if sha is not None and a.desired_sha != sha:
                return False
        return True

    def progress(
        self, label: str, done: Callable[[], bool], timeout: float, sha: str | None = None
    ) -> None:
        """Wait for ``done`` and print a progress line whenever the counts change
        (Synced counts only Applications synced at ``sha`` when given)."""
        last = ""
        deadline = time.monotonic() + timeout
        while True:
            if done():
                return
            apps = self.apps()
            present = [apps[n] for n in self.expected if n in apps]
            synced = sum(
                a.sync_status == "Synced" and (sha is None or a.desired_sha == sha) for a in present
            )
            healthy = sum(a.health_status == "Healthy" for a in present)
            line = (
                f"  {label}: {len(present)}/{len(self.expected)} Applications, "
                f"{synced} Synced{' at ' + sha[:8] if sha else ''}, {healthy} Healthy"
            )
            if line != last:
                self.out(line)
                last = line
            if time.monotonic() >= deadline:
                missing = [
                    f"{n} ({apps[n].sync_status}/{apps[n].health_status})" if n in apps else n
                    for n in self.expected
                    if n not in apps
                    or (apps[n].sync_status, apps[n].health_status) != ("Synced", "Healthy")
                ]
                raise StepFailed(
                    f"timed out after {timeout:.0f} s; not Synced and Healthy: "
                    + ", ".join(missing[:8])
                )
            time.sleep(0.5)

    def payments_image(self, cluster: str) -> str | None:
        dep = self.t.get_json(cluster, "deployment", "payments", "-n", "payments")
        if dep is None:
            return None
        return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])

    def _payments_apps(self) -> list[AppRecord]:
        apps = self.apps()
        return [apps[n] for n in self.payments if n in apps]

    # ------------------------------------------------------------ the steps

    def run(self) -> DemoReport:
        steps: list[tuple[str, Callable[[], str]]] = [
            ("initial fleet sync", self.step_initial_sync),
            ("image bump rolls out everywhere, waves in order", self.step_image_bump),
            ("kubectl scale drift detected and healed", self.step_drift),
            ("crash-looping image: Degraded, old pods serve; git revert heals", self.step_crash),
            ("failing migration Job stops the sync before the Deployment", self.step_migration),
            ("removing a cluster prunes its Applications", self.step_remove_cluster),
        ]
        for number, (title, body) in enumerate(steps, start=1):
            self.out("")
            self.out(f"== Step {number}/{len(steps)}: {title}")
            started = time.monotonic()
            try:
                detail = body()
                ok = True
            except StepFailed as exc:
                detail, ok = str(exc), False
            result = StepResult(
                number=number, title=title, ok=ok, detail=detail,
                seconds=time.monotonic() - started,
            )  # fmt: skip
            self.results.append(result)
            self.out("  Status rollup (`hub status`):")
            self.status()
            verdict = "OK" if ok else "FAILED"
            self.out(f"Step {number} {verdict}: {detail} ({result.seconds:.1f} s)")
            if not ok:
                self.out(f"  (hub log: {self.log_path})")
                break
            if self.options.pause:
                time.sleep(self.options.pause)
        return DemoReport(steps=tuple(self.results), planned=len(steps))

    def step_initial_sync(self) -> str:
        self.out("The hub loads the ApplicationSets, generates one Application per target")
        self.out("and syncs every cluster (waves, hooks and health gates per Application).")
        sha = self.head()
        self.progress(
            "initial sync", lambda: self.all_synced_healthy(sha), self.options.step_timeout, sha
        )
        apps = self.apps()
        self.payments = sorted(
            n for n in self.expected if "apps/payments/" in _source_path(apps[n])
        )
        if not self.payments:
            raise StepFailed("no payments Application was generated")
        for app in self._payments_apps():
            assert app.cluster is not None
            dep = self.t.get_json(app.cluster, "deployment", "payments", "-n", "payments")
            if dep is None:
                raise StepFailed(f"{app.cluster}: deployment payments/payments not found")
            ready = int(dep.get("status", {}).get("readyReplicas", 0))
            if ready < 2:
                raise StepFailed(f"{app.cluster}: payments has {ready} ready pods, expected 2+")
        clusters = {a.cluster for a in apps.values() if a.name in self.expected}
        return (
            f"{len(self.expected)} Applications Synced and Healthy on {len(clusters)} "
            f"clusters at {sha[:8]}; payments serving on {len(self.payments)} clusters (kubectl)"
        )

    def _bump(self, app_tag: str, migrate_tag: str | None, message: str) -> str:
        path = self.repo / PAYMENTS_KUSTOMIZATION
        text = set_image_tag(path.read_text(), PAYMENTS_IMAGE, app_tag)
        if migrate_tag is not None:
            text = set_image_tag(text, MIGRATE_IMAGE, migrate_tag)
        sha = self.t.commit({PAYMENTS_KUSTOMIZATION: text}, message)
        self.out(f'  git commit {sha[:8]} "{message}"')
        self.notify_push()
        return sha

    def _payments_rolled_out(self, sha: str, tag: str) -> bool:
        for app in self._payments_apps():
            # desired_sha: the commit the app was last compared at. A revert to manifests
            # that are already live is Synced at the new commit without any operation.
            if (app.sync_status, app.health_status, app.desired_sha) != ("Synced", "Healthy", sha):
                return False
            assert app.cluster is not None
            image = self.payments_image(app.cluster)
            if image is None or _image_tag(image) != tag:
                return False
        return len(self._payments_apps()) == len(self.payments)

    def step_image_bump(self) -> str:
        sha = self._bump("1.1.0", "1.1.0", "payments: release 1.1.0")
        self.progress(
            "rollout",
            lambda: self._payments_rolled_out(sha, "1.1.0") and self.all_synced_healthy(),
            self.options.step_timeout,
            sha=sha,
        )
        orders: list[str] = []
        for app in self._payments_apps():
            if _op_revision(app.operation_state) != sha:
                raise StepFailed(f"{app.name}: its last operation did not sync {sha[:8]}")
            order = _wave_order(app.operation_state)
            if order is None:
                raise StepFailed(f"{app.name}: its last operation recorded no resources")
            problem = order_problem(order)
            if problem:
                raise StepFailed(f"{app.name}: {problem}")
            orders.append(app.name)
            assert app.cluster is not None
            self._check_migration_before_rollout(app.cluster)
        sample = _wave_order(self._payments_apps()[0].operation_state) or []
        self.out("  order of the last sync: " + " -> ".join(_compress(sample)))
        return (
            f"payments at 1.1.0 on {len(orders)} clusters (kubectl), every sync ran "
            "PreSync migration, waves -2, -1, 1, 2, then the PostSync smoke test"
        )

    def _check_migration_before_rollout(self, cluster: str) -> None:
        """Live evidence of the order: the migration Job completed before the Deployment's
        current ReplicaSet was created."""
        job = self.t.get_json(cluster, "job", "payments-migrate", "-n", "payments")
        if job is None:
            raise StepFailed(f"{cluster}: the PreSync migration Job payments-migrate is missing")
        done_at = job.get("status", {}).get("completionTime")
        if not done_at:
            raise StepFailed(f"{cluster}: the migration Job has not completed")
        rs_list = self.t.get_json(cluster, "replicasets", "-n", "payments", "-l", "app=payments")
        newest = max(
            (rs for rs in (rs_list or {}).get("items", []) if rs["spec"].get("replicas", 0) > 0),
            key=lambda rs: rs["metadata"]["creationTimestamp"],
            default=None,
        )
        if newest is None:
            raise StepFailed(f"{cluster}: no active payments ReplicaSet")
        if newest["metadata"]["creationTimestamp"] < done_at:
            raise StepFailed(
                f"{cluster}: ReplicaSet {newest['metadata']['name']} was created "
                f"({newest['metadata']['creationTimestamp']}) before the migration finished "
                f"({done_at})"
            )

    def step_drift(self) -> str:
        target = self._drift_target()
        cluster, app_name = target
        dep = self.t.get_json(cluster, "deployment", "users", "-n", "users")
        if dep is None:
            raise StepFailed(f"{cluster}: deployment users/users not found")
        declared = int(dep["spec"]["replicas"])
        scaled = declared + 3
        self.out(
            f"  kubectl --context {cluster} -n users scale deployment users --replicas={scaled}"
        )
        done = self.t.kubectl(
            cluster, "-n", "users", "scale", "deployment", "users", f"--replicas={scaled}"
        )
        if done.returncode != 0:
            raise StepFailed(f"kubectl scale failed: {done.stderr.strip()}")
        before = _history_id(self.apps()[app_name].operation_state)

        def healed() -> bool:
            live = self.t.get_json(cluster, "deployment", "users", "-n", "users")
            if live is None or int(live["spec"]["replicas"]) != declared:
                return False
            app = self.apps()[app_name]
            return (app.sync_status, app.health_status) == ("Synced", "Healthy") and (
                _history_id(app.operation_state) != before
            )

        wait_until(f"{app_name} to heal replicas back to {declared}", healed, 60)
        op = self.apps()[app_name].operation_state or {}
        trigger = str(op.get("trigger", "?"))
        # self-heal: drift after a successful sync of this revision. automated: the app's
        # last operation was for an older commit (the release commit did not change users,
        # so it was never synced at HEAD), and Argo CD's rule makes that a normal sync.
        if trigger not in ("self-heal", "automated"):
            raise StepFailed(f"{app_name}: healed by a {trigger!r} operation, not by the hub")
        self.out(f"  {app_name}: OutOfSync -> {trigger} sync -> Synced ({_op_summary(op)})")
        self.out(
            "  (payments' replicas are not drift: its Application ignores /spec/replicas "
            "for the HPA)"
        )
        return (
            f"{cluster}: users scaled to {scaled} by hand; the hub saw the drift and an "
            f"{trigger} sync put it back to {declared} (kubectl)"
        )

    def _drift_target(self) -> tuple[str, str]:
        apps = self.apps()
        users = sorted(
            (
                a
                for a in apps.values()
                if a.name in self.expected and "apps/users/" in _source_path(a)
            ),
            key=lambda a: a.name,
        )
        prod = [a for a in users if a.cluster and a.cluster.startswith("prod")]
        candidates = prod or users
        if not candidates or candidates[0].cluster is None:
            raise StepFailed("no users Application to cause drift on")
        return candidates[0].cluster, candidates[0].name

    def step_crash(self) -> str:
        sha = self._bump("1.2.0-crashloop", None, "payments: release 1.2.0")
        self.out("  (the image tag contains `crashloop`: the simulated kubelet crash-loops it)")

        def degraded() -> bool:
            apps = self._payments_apps()
            return len(apps) == len(self.payments) and all(
                a.health_status == "Degraded" and a.desired_sha == sha for a in apps
            )

        self.progress_payments("waiting for Degraded", degraded)
        serving: list[str] = []
        for app in self._payments_apps():
            assert app.cluster is not None
            ready_old = self._pods_with_tag(app.cluster, "1.1.0", ready=True)
            crashing = self._pods_with_tag(app.cluster, "1.2.0-crashloop", ready=False)
            if crashing < 1:
                raise StepFailed(f"{app.cluster}: no unready 1.2.0-crashloop pod was started")
            if ready_old < 2:
                raise StepFailed(
                    f"{app.cluster}: only {ready_old} ready payments pods on 1.1.0; the old "
                    "pods should keep serving"
                )
            serving.append(f"{app.cluster}={ready_old}")
        self.out(
            "  crash-looping 1.2.0 pods never Ready; old 1.1.0 pods still Ready: "
            + ", ".join(serving)
        )
        self._revert_to_stable(sha)
        return (
            f"payments Degraded on {len(serving)} clusters while 1.1.0 kept serving; "
            "after the revert Synced and Healthy on 1.1.0 again"
        )

    def _revert_to_stable(self, sha: str) -> None:
        """Show the fleet, ``git revert`` the bad release ``sha`` and wait until payments
        runs 1.1.0 again with everything Synced and Healthy."""
        self.status()
        self.t.git("revert", "--no-edit", "HEAD")
        revert = self.head()
        self.out(f"  git revert {sha[:8]} -> {revert[:8]}")
        self.notify_push()
        self.progress(
            "recovery",
            lambda: self._payments_rolled_out(revert, "1.1.0") and self.all_synced_healthy(),
            self.options.step_timeout,
            sha=revert,
        )

    def progress_payments(self, label: str, done: Callable[[], bool]) -> None:
        last = ""
        deadline = time.monotonic() + self.options.step_timeout
        while not done():
            apps = self._payments_apps()
            line = f"  {label}: " + ", ".join(f"{a.cluster}={a.health_status}" for a in apps)
            if line != last:
                self.out(line)
                last = line
            if time.monotonic() >= deadline:
                raise StepFailed(f"timed out: {line.strip()}")
            time.sleep(0.5)

    def _pods_with_tag(self, cluster: str, tag: str, *, ready: bool) -> int:
        """Payments pods running image tag ``tag`` whose Ready condition is ``ready``."""
        pods = self.t.get_json(cluster, "pods", "-n", "payments", "-l", "app=payments") or {}
        count = 0
        for pod in pods.get("items", []):
            image = pod["spec"]["containers"][0]["image"]
            conditions = pod.get("status", {}).get("conditions", [])
            is_ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            if is_ready == ready and _image_tag(image) == tag:
                count += 1
        return count

    def step_migration(self) -> str:
        sha = self._bump("1.3.0", "1.3.0-fail", "payments: release 1.3.0 (with a migration)")
        self.out("  (the migration image tag contains `fail`: its Job fails)")

        def failed() -> bool:
            apps = self._payments_apps()
            return len(apps) == len(self.payments) and all(
                (a.operation_state or {}).get("phase") in ("Failed", "Error")
                and _op_revision(a.operation_state) == sha
                for a in apps
            )

        self.progress_payments("waiting for the sync to fail", failed)
        details: list[str] = []
        for app in self._payments_apps():
            assert app.cluster is not None
            image = self.payments_image(app.cluster)
            if image is None or _image_tag(image) != "1.1.0":
                raise StepFailed(f"{app.cluster}: the Deployment changed to {image}")
            job = self.t.get_json(app.cluster, "job", "payments-migrate", "-n", "payments") or {}
            if not _job_failed(job):
                raise StepFailed(f"{app.cluster}: the migration Job is not Failed")
            message = str((app.operation_state or {}).get("message", ""))
            details.append(app.cluster)
            self.out(f"  {app.name}: {message[:100]}")
        self._revert_to_stable(sha)
        return (
            f"the PreSync migration failed on {len(details)} clusters and the Deployment "
            "stayed on 1.1.0 (kubectl); the revert synced cleanly"
        )

    def step_remove_cluster(self) -> str:
        gone = self.options.clusters[-1].name
        apps = self.apps()
        owned = sorted(n for n, a in apps.items() if a.cluster == gone)
        if not owned:
            raise StepFailed(f"{gone} has no Applications to prune")
        self.out(f"  hub cluster rm {gone} --yes   ({len(owned)} Applications target it)")
        self.t.hub("cluster", "rm", gone, "--yes")

        def pruned() -> bool:
            left = self.apps()
            return not any(a.cluster == gone for a in left.values())

        wait_until(f"the Applications of {gone} to leave the hub", pruned, 60)
        self.expected = [n for n in self.expected if n not in owned]
        self.payments = [n for n in self.payments if n not in owned]
        wait_until("the rest of the fleet Synced and Healthy", self.all_synced_healthy, 60)
        still = self.payments_image(gone)
        note = "its workloads keep running unmanaged" if still else "its workloads are gone"
        return (
            f"{len(owned)} Applications of {gone} pruned from the hub, {note}; "
            f"{len(self.expected)} Applications on the remaining clusters Synced and Healthy"
        )

    # ------------------------------------------------------------ --keep

    def keep_running(self) -> None:
        from hub.api.token import token_path

        token_file = token_path(self.home)
        self.out("")
        self.out("The hub keeps running (--keep). Try:")
        self.out(f"  dashboard:   http://127.0.0.1:{self.port}/")
        if token_file.exists():
            self.out(f"  API token:   in {token_file}")
        self.out(f"  kubeconfig:  {self.t.kubeconfig}")
        self.out(f"  status:      HUB_HOME={self.home} hub status")
        self.out(f"               HUB_HOME={self.home} hub app list")
        self.out(
            f"  kubectl:     kubectl --kubeconfig {self.t.kubeconfig} --context "
            f"{self.options.clusters[0].name} -n payments get pods"
        )
        self.out(f"  hub log:     {self.log_path}")
        self.out("Press Ctrl-C to stop the hub and the clusters and remove everything.")
        try:
            while self.proc is not None and self.proc.poll() is None:
                time.sleep(1)
            self.out("hub serve exited")
        except KeyboardInterrupt:
            self.out("")


def _destination(app: dict[str, Any]) -> str:
    dest = app.get("spec", {}).get("destination", {})
    return str(dest.get("name") or dest.get("server") or "")


def _source_path(app: AppRecord) -> str:
    source = next(iter(declared_source_specs(app.spec)), {})
    return str(source.get("path", "")) + "/"


def _op_summary(op: Any) -> str:
    op = op or {}
    return f"{op.get('phase', '?')}: {str(op.get('message', ''))[:60]}"


def _history_id(op: Any) -> Any:
    return (op or {}).get("historyId")


def _op_revision(op: Any) -> str | None:
    result = (op or {}).get("syncResult") or {}
    revision = result.get("revision")
    return str(revision) if revision else None


def _job_failed(job: dict[str, Any]) -> bool:
    conditions = job.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Failed" and c.get("status") == "True" for c in conditions)


def _wave_order(op: Any) -> list[tuple[str, int, str]] | None:
    """(phase, wave, kind/name) of each resource of an operation, in the recorded order."""
    resources = ((op or {}).get("syncResult") or {}).get("resources") or []
    if not resources:
        return None
    return [
        (str(r.get("phase", "")), int(r.get("wave", 0)), f"{r.get('kind')}/{r.get('name')}")
        for r in resources
    ]


def order_problem(order: list[tuple[str, int, str]]) -> str | None:
    """Why ``order`` is not phases then waves ascending, or None when it is."""
    keys = [(PHASE_ORDER.get(phase, 9), wave) for phase, wave, _ in order]
    for i in range(1, len(order)):
        a, b = order[i - 1], order[i]
        if keys[i] < keys[i - 1]:
            return f"{b[2]} ({b[0]} wave {b[1]}) ran after {a[2]} ({a[0]} wave {a[1]})"
    phases = [p for p, _, _ in order]
    for needed, what in (("PreSync", "migration"), ("PostSync", "smoke test")):
        if needed not in phases:
            return f"no {needed} hook ({what}) ran"
    return None


def _compress(order: list[tuple[str, int, str]]) -> list[str]:
    """Group consecutive resources of one phase and wave: ``Sync w1: Deployment/payments``."""
    groups: list[tuple[str, int, list[str]]] = []
    for phase, wave, name in order:
        if groups and groups[-1][0] == phase and groups[-1][1] == wave:
            if name not in groups[-1][2]:
                groups[-1][2].append(name)
        else:
            groups.append((phase, wave, [name]))
    return [f"{p} {w}: {', '.join(n)}" for p, w, n in groups]


def _terminate_as_interrupt() -> None:
    """SIGTERM ends the demo like Ctrl-C does: through the clean-up, not around it (a
    killed demo would leave `hub serve` and its temporary directory behind)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@contextmanager
def demo_session(options: DemoOptions, out: Callable[[str], None] = print) -> Iterator[Demo]:
    """A set-up demo, torn down on exit (the caller decides about --keep before leaving)."""
    demo = Demo(options, out)
    try:
        demo.setup()
        yield demo
    finally:
        demo.cleanup()


def run_demo(options: DemoOptions, out: Callable[[str], None] = print) -> DemoReport:
    """The whole scenario; returns the report (the CLI turns it into an exit code)."""
    started = time.monotonic()
    _terminate_as_interrupt()
    with demo_session(options, out) as demo:
        report = demo.run()
        out("")
        for step in report.steps:
            out(f"  step {step.number} {'OK' if step.ok else 'FAILED'}  {step.title}")
        for number in range(len(report.steps) + 1, report.planned + 1):
            out(f"  step {number} NOT RUN")
        total = time.monotonic() - started
        if report.ok:
            out(f"demo OK: all {report.planned} expectations held ({total:.0f} s)")
        else:
            failed = ", ".join(f"step {s.number} ({s.detail})" for s in report.failed)
            out(f"demo FAILED: {failed or 'not every step ran'} ({total:.0f} s)")
        if options.keep:
            demo.keep_running()
    return report


__all__ = [
    "DEFAULT_CLUSTERS",
    "ClusterSpec",
    "Demo",
    "DemoError",
    "DemoOptions",
    "DemoReport",
    "StepResult",
    "cluster_specs",
    "default_examples",
    "run_demo",
    "set_image_tag",
]
