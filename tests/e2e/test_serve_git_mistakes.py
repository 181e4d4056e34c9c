"""A mistake in Git never removes Applications or workloads (issue 11): `hub serve` as a
subprocess on three `hub sim` clusters, a real Git repository, the real CLI, kubectl.

One hub runs for the whole module. Each test commits a mistake, waits until the hub has
loaded that commit, checks that every Application and every Deployment is still there and
that the mistake is reported (`hub source list`, `hub appset list`, `hub status`, the API
the dashboard reads), then puts the good files back. The tests at the end are the ways
that *do* delete, as docs/hub.md lists them ("What can delete an Application").
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusters.sim import SimServer
from hub.api.client import ApiClient, find_running_hub
from hub.api.token import read_token
from hub.apps import AppStore
from hub.home import open_store
from hub.sources import SourceRecord, SourceStore
from tests.e2e.cdp import Browser, find_chromium
from tests.e2e.serve_support import (
    CONFIGMAP,
    DEPLOYMENT,
    Fleet,
    hub_url,
    start_hub,
    stop_hub,
    wait_for,
)
from tests.sync.e2e_helpers import GitRepo

pytestmark = [pytest.mark.sim_only("needs simulated clusters"), pytest.mark.timeout(300)]

CLUSTERS = ["east", "west", "north"]
GUESTBOOK_FILE = "appsets/guestbook.yaml"
MANUAL_FILE = "appsets/manual.yaml"

# applicationsSync: sync is explicit, as in the issue: the policy that allows deletion.
APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: guestbook
spec:
  generators:
    - clusters:
        selector:
          matchLabels:
            env: prod
  template:
    metadata:
      name: '{name}'
      finalizers:
        - resources-finalizer.argocd.argoproj.io
    spec:
      project: default
      source:
        repoURL: {repo}
        targetRevision: main
        path: guestbook
      destination:
        server: '{{{{server}}}}'
        namespace: guestbook
      syncPolicy:
        automated:
          prune: true
          selfHeal: true
        syncOptions:
          - CreateNamespace=true
  syncPolicy:
    applicationsSync: sync
{extra}"""

GOOD_NAME = "{{name}}-guestbook"
TYPO_NAME = "{{name}}-guestbook-{{metadata.labels.team}}"  # no cluster has a team label
STRATEGY = """  strategy:
    type: Canary
"""

# No automated sync: `hub app sync NAME --wait` makes its first sync.
MANUAL = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: manual
spec:
  generators:
    - list:
        elements:
          - cluster: east
  template:
    metadata:
      name: 'manual-{{{{cluster}}}}'
      finalizers:
        - resources-finalizer.argocd.argoproj.io
    spec:
      project: default
      source:
        repoURL: {repo}
        targetRevision: main
        path: guestbook
      destination:
        name: '{{{{cluster}}}}'
        namespace: manual
      syncPolicy:
        syncOptions:
          - CreateNamespace=true
"""


def guestbook(repo: GitRepo, *, name: str = GOOD_NAME, extra: str = "") -> str:
    return APPSET.format(repo=repo.path, name=name, extra=extra)


CHROMIUM = find_chromium()


class Mistakes(Fleet):
    """The fleet plus what these tests read: the source's state and the sets' errors."""

    good: dict[str, str]
    url: str

    def source(self) -> SourceRecord:
        with open_store(self.home) as store:
            return SourceStore(store).get("root")

    def loaded_after(self, since: datetime) -> SourceRecord | None:
        """The source once a load that started after ``since`` is recorded and the sets
        were reconciled after it, else None."""
        record = self.source()
        if record.last_loaded_at is None or record.last_loaded_at <= since:
            return None
        with open_store(self.home) as store:
            sets = AppStore(store).list_appsets()
        if any(s.reconciled_at is None or s.reconciled_at < record.last_loaded_at for s in sets):
            return None
        return record

    def commit(self, files: dict[str, str | None], message: str = "mistake") -> SourceRecord:
        """Commit ``files`` and wait until the hub has loaded that commit."""
        since = datetime.now().astimezone()
        time.sleep(0.01)
        sha = self.repo.write(files, message)
        return self.await_load(sha, since)

    def read_git_now(self) -> None:
        """Ask the hub to read Git now (`POST /api/v1/refresh`), as a push webhook would:
        the hypothesis test below loads some forty commits, and waiting for the next 1 s
        poll cost each of them ~0.5 s. Only when the hub reads Git changes; what it does
        with what it read is the same as after a poll."""
        ApiClient(self.url, token=read_token(self.home)).post("/api/v1/refresh")

    def await_load(self, sha: str, since: datetime) -> SourceRecord:
        self.read_git_now()

        def seen() -> SourceRecord | None:
            record = self.loaded_after(since)
            if record is None:
                return None
            applied = sha in (record.last_sha, record.held_sha)
            return record if applied or sha[:12] in (record.last_error or "") else None

        result: SourceRecord = wait_for(f"the hub to load {sha[:12]}", seen, timeout=60)
        return result

    def restore(self) -> None:
        """Put the good files back (after a force-push: the good branch) and wait until
        the hub runs on them with no error."""
        since = datetime.now().astimezone()
        time.sleep(0.01)
        self.repo.git("reset", "-q", "--hard", self.good["sha"])
        self.read_git_now()

        def clean() -> bool:
            record = self.loaded_after(since)
            return (
                record is not None
                and record.last_sha == self.good["sha"]
                and record.last_error is None
                and not self.set_errors()
            )

        wait_for("the hub back on the good revision", clean, timeout=60)

    def good_files(self) -> dict[str, str]:
        return {
            MANUAL_FILE: MANUAL.format(repo=self.repo.path),
            "guestbook/deployment.yaml": DEPLOYMENT.format(image="nginx:1.25"),
            "guestbook/configmap.yaml": CONFIGMAP,
        }

    def set_errors(self) -> dict[str, str]:
        with open_store(self.home) as store:
            return {s.name: s.last_error for s in AppStore(store).list_appsets() if s.last_error}

    def assert_nothing_deleted(self, expected: set[str]) -> None:
        apps = self.apps()
        assert set(apps) == expected, f"Applications changed: {sorted(apps)}"
        deleting = [a.name for a in apps.values() if a.deleting]
        assert deleting == [], f"marked for deletion: {deleting}"
        for cluster in CLUSTERS:
            assert self.deployment(cluster) is not None, f"the Deployment on {cluster} is gone"
        if "manual-east" in expected and apps["manual-east"].synced_sha:  # synced by a test
            out = self.kubectl("east", "get", "deployment", "web", "-n", "manual")
            assert out.returncode == 0, out.stderr

    def status_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.cli.ok("status", "-o", "json").stdout)
        return doc


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mistakes]:
    root = tmp_path_factory.mktemp("git-mistakes")
    with SimServer(
        clusters=CLUSTERS, ready_delay=0.2, kubeconfig_path=root / "sim.kubeconfig"
    ) as sim:
        repo = GitRepo(root / "repo")
        f = Mistakes(root / "home", sim, repo, root / "hub.log")
        f.good = {"sha": repo.write({GUESTBOOK_FILE: guestbook(repo), **f.good_files()}, "all")}
        f.cli.ok("init")
        for name in CLUSTERS:
            f.cli.ok(
                "cluster", "add", name, "--kubeconfig", str(sim.kubeconfig_path),
                "--context", name, "--label", "env=prod",
            )  # fmt: skip
        f.cli.ok("source", "add", "root", "--repo", str(repo.path), "--path", "appsets")
        start_hub(f, "--git-poll", "1", "--resync", "30", "--port", "0")
        try:
            f.url = hub_url(f)
            wait_for("the hub's API", lambda: find_running_hub(f.home) == f.url)
            yield f
        finally:
            code = stop_hub(f)
        assert code == 0, f.hub_log()[-4000:]


ALL = {f"{c}-guestbook" for c in CLUSTERS} | {"manual-east"}


def test_the_fleet_syncs_and_the_manual_app_waits(fleet: Mistakes) -> None:
    wait_for("3 guestbooks Synced and Healthy", lambda: fleet.all_good(CLUSTERS, "nginx:1.25"),
             timeout=90)  # fmt: skip
    manual = fleet.apps()["manual-east"]
    assert manual.synced_sha is None  # no automated sync: never synced


def test_app_sync_wait_exits_0_once_the_first_sync_is_healthy(fleet: Mistakes) -> None:
    # Issue 11 item 16: the first sync used to end "OutOfSync / Missing", exit 1.
    run = fleet.cli("app", "sync", "manual-east", "--wait", "--timeout", "120")
    assert run.exit_code == 0, run.output
    assert "Succeeded" in run.stdout and "manual-east: Synced / Healthy" in run.stdout
    assert fleet.kubectl("east", "get", "deployment", "web", "-n", "manual").returncode == 0


@pytest.mark.parametrize(
    ("content", "holds"),
    [
        ("foo: bar\n", "a document without kind"),
        ("", "nothing (an empty file)"),
        ("KIND", "kind 'ApplicationSett'"),
    ],
    ids=["foo-bar", "empty", "kind-typo"],
)
def test_a_set_file_that_stops_being_a_set_deletes_nothing_and_says_so(
    fleet: Mistakes, content: str, holds: str
) -> None:
    if content == "KIND":
        content = guestbook(fleet.repo).replace("kind: ApplicationSet", "kind: ApplicationSett")
    record = fleet.commit({GUESTBOOK_FILE: content})
    try:
        fleet.assert_nothing_deleted(ALL)
        assert record.last_error and f"{GUESTBOOK_FILE}@" in record.last_error
        assert holds in record.last_error and "git rm" in record.last_error
        # Seen everywhere, not only in `hub source list`:
        listed = fleet.cli.ok("source", "list")
        assert "error" in listed.stdout and GUESTBOOK_FILE in listed.stderr
        sets = fleet.cli.ok("appset", "list")
        assert "error" in sets.stdout and GUESTBOOK_FILE in sets.stderr
        detail = json.loads(fleet.cli.ok("appset", "get", "guestbook", "-o", "json").stdout)
        error = next(c for c in detail["conditions"] if c["type"] == "ErrorOccurred")
        assert error["status"] == "True" and GUESTBOOK_FILE in error["message"]
        status = fleet.cli.ok("status")
        assert "problems:" in status.stdout and "source root" in status.stdout
        failing = fleet.cli("status", "--fail-on", "error")
        assert failing.exit_code == 3 and GUESTBOOK_FILE in failing.stderr
        kinds = {(p["kind"], p["name"]) for p in fleet.status_json()["problems"]}
        assert {("source", "root"), ("appset", "guestbook")} <= kinds  # what the page shows
    finally:
        fleet.restore()
    fleet.assert_nothing_deleted(ALL)
    assert fleet.cli("status", "--fail-on", "error").exit_code == 0


def test_a_placeholder_left_in_every_name_deletes_nothing(fleet: Mistakes) -> None:
    # Issue 11 item 2: with applicationsSync: sync this cascade-deleted every Application.
    record = fleet.commit({GUESTBOOK_FILE: guestbook(fleet.repo, name=TYPO_NAME)})
    try:
        fleet.assert_nothing_deleted(ALL)
        assert record.last_error is None  # the file is a fine ApplicationSet ...
        errors = fleet.set_errors().get("guestbook") or ""  # ... that generates bad apps
        assert "placeholder" in errors and "nothing created, updated or deleted" in errors
        assert "applicationsSync" not in errors
        failing = fleet.cli("status", "--fail-on", "error")
        assert failing.exit_code == 3 and "appset guestbook is in error" in failing.stderr
    finally:
        fleet.restore()
    fleet.assert_nothing_deleted(ALL)


def test_an_unknown_strategy_is_refused_and_nothing_changes(fleet: Mistakes) -> None:
    before = {n: a.generation for n, a in fleet.apps().items()}
    # With a template change: were the strategy ignored, every app would be updated at once.
    changed = guestbook(fleet.repo, extra=STRATEGY).replace(
        "namespace: guestbook", "namespace: guestbook-v2"
    )
    fleet.commit({GUESTBOOK_FILE: changed})
    try:
        assert {n: a.generation for n, a in fleet.apps().items()} == before
        fleet.assert_nothing_deleted(ALL)
        errors = fleet.set_errors().get("guestbook") or ""
        assert "spec.strategy.type 'Canary' is not supported" in errors
    finally:
        fleet.restore()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_the_dashboard_names_a_source_whose_set_file_broke(fleet: Mistakes, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    fleet.commit({GUESTBOOK_FILE: "foo: bar\n"})

    async def scenario() -> None:
        async with Browser.launch(CHROMIUM, tmp_path / "profile") as browser:
            page = await browser.new_page(fleet.url + "/")
            text = await page.wait_for(
                "document.querySelector('#appset-errors li[data-source=root]')?.textContent",
                what="the source's problem above the matrix",
            )
            assert GUESTBOOK_FILE in text and "git rm" in text
            assert await page.evaluate(
                "document.querySelector('#appset-errors li[data-appset=guestbook]') !== null"
            )

    try:
        fleet.assert_nothing_deleted(ALL)
        asyncio.run(scenario())
    finally:
        fleet.restore()


def orphan_commit(fleet: Mistakes) -> str:
    """Force-push an orphan commit holding only ``appsets/.keep`` onto main."""
    repo = fleet.repo
    repo.git("checkout", "-q", "--orphan", "orphan")
    repo.git("rm", "-q", "-r", "--cached", ".")
    repo.git("clean", "-q", "-f", "-d")
    (repo.path / "appsets").mkdir(exist_ok=True)
    (repo.path / "appsets/.keep").write_text("")
    repo.git("add", "appsets/.keep")
    repo.git("commit", "-q", "-m", "orphan")
    repo.git("branch", "-q", "-M", "orphan", "main")
    return repo.git("rev-parse", "HEAD")


BAD_COMMITS = st.sampled_from(["unparseable", "wrong-kind", "empty", "placeholder", "orphan"])


@pytest.mark.slow
@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mistakes=st.lists(BAD_COMMITS, min_size=2, max_size=4))
def test_no_sequence_of_bad_commits_deletes_anything(fleet: Mistakes, mistakes: list[str]) -> None:
    # docs/hub.md records how many sequences this ran (max_examples above).
    try:
        for mistake in mistakes:
            if mistake == "orphan":
                since = datetime.now().astimezone()
                time.sleep(0.01)
                fleet.await_load(orphan_commit(fleet), since)
            else:
                bad = {
                    "unparseable": "kind: ApplicationSet\nspec: [unclosed\n",
                    "wrong-kind": guestbook(fleet.repo).replace(
                        "kind: ApplicationSet", "kind: ApplicationSett"
                    ),
                    "empty": "",
                    "placeholder": guestbook(fleet.repo, name=TYPO_NAME),
                }[mistake]
                # On the good tree (also after a force-push): only the set file is wrong.
                fleet.commit({**fleet.good_files(), GUESTBOOK_FILE: bad}, mistake)
            fleet.assert_nothing_deleted(ALL)
            problems = fleet.status_json()["problems"]
            assert problems, f"{mistake}: not reported"
    finally:
        fleet.restore()


def test_git_rm_of_a_set_file_deletes_its_applications_and_their_workloads(
    fleet: Mistakes,
) -> None:
    # One set of two: not held by the source guard (docs/hub.md, "What can delete").
    fleet.commit({MANUAL_FILE: None}, "retire the manual set")
    wait_for("manual-east gone", lambda: "manual-east" not in fleet.apps())
    wait_for(
        "its Deployment deleted (resources finalizer)",
        lambda: fleet.kubectl("east", "get", "deployment", "web", "-n", "manual").returncode != 0,
    )
    fleet.assert_nothing_deleted(ALL - {"manual-east"})
    sha = fleet.repo.git("rev-parse", "HEAD")
    fleet.good["sha"] = sha


def test_a_force_push_dropping_every_set_is_held_until_confirmed(fleet: Mistakes) -> None:
    left = ALL - {"manual-east"}
    since = datetime.now().astimezone()
    time.sleep(0.01)
    sha = orphan_commit(fleet)
    record = fleet.await_load(sha, since)
    fleet.assert_nothing_deleted(left)
    assert record.held_sha == sha and record.last_sha == fleet.good["sha"]
    assert record.last_error and "would delete 3 of the 3 Applications" in record.last_error
    assert "hub source confirm root" in record.last_error
    fleet.assert_nothing_deleted(left)
    assert f"held {sha[:7]}" in fleet.cli.ok("source", "list").stdout
    status = fleet.cli("status", "--fail-on", "error")
    assert status.exit_code == 3 and "hub source confirm root" in status.stderr
    # A person confirms this revision: now (and only now) it deletes.
    confirmed = fleet.cli.ok("source", "confirm", "root")
    assert sha[:12] in confirmed.stdout
    wait_for("every Application gone", lambda: not fleet.apps(), timeout=90)
    for cluster in CLUSTERS:
        wait_for(f"the Deployment on {cluster} deleted", lambda c=cluster: not fleet.deployment(c))
    assert fleet.source().last_sha == sha and fleet.source().held_sha is None
