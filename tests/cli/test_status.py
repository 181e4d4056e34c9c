"""`hub status` and the NAME-based `hub app`/`hub appset` views: from a running hub's API or,
read-only, from the store; --fail-on exit codes; stable JSON; 80 columns; no colour in pipes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from hub.api.app import DiffView, create_api_app
from hub.api.client import find_running_hub, write_serve_file
from hub.api.token import load_or_create_token
from hub.api.views import FleetView
from hub.home import open_store
from hub.metrics import Metrics
from hub.rollups import FAIL_ON_EXIT_CODE
from hub.store import Store
from tests.api.fleet import APPS, RecordingHub, populate
from tests.clusters.cli_support import Hub


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("HUB_MASTER_KEY", raising=False)
    monkeypatch.delenv("HUB_API_TOKEN", raising=False)
    path = tmp_path / "home"
    populate(path)
    return path


@pytest.fixture
def hub(home: Path) -> Hub:
    return Hub(home)


def digest(home: Path) -> str:
    with Store.open(home / "hub.db") as store, store.read() as db:
        rows = [
            db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
            for t in ("applications", "applicationsets", "clusters", "sync_history", "meta")
        ]
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def no_time(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "generatedAt"}


@contextmanager
def running_api(home: Path, handle: RecordingHub) -> Iterator[str]:
    """The real API app on a real socket, in a thread, as `hub serve` runs it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_api_app(
        home=home, handle=handle, token=load_or_create_token(home), metrics=Metrics(),
        webhook_secret=None,
        differ=lambda r: DiffView(revision="a" * 40, status=r.sync_status if r.sync_status == "Synced" else "OutOfSync", diff="" if r.sync_status == "Synced" else "-replicas: 1\n+replicas: 2\n"),
    )  # fmt: skip
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        sock.close()


# ---------------------------------------------------------------- hub status


def test_without_a_hub_status_reads_the_store_and_writes_nothing(hub: Hub, home: Path) -> None:
    before = digest(home)
    run = hub.ok("status", "-o", "json")
    assert digest(home) == before
    doc = json.loads(run.stdout)
    with open_store(home) as store:
        expected = FleetView(store).status(live=None).to_json()
    assert no_time(doc) == no_time(expected)
    assert "from the store" in hub.ok("status").stdout


def test_json_and_yaml_carry_the_documented_shape(hub: Hub) -> None:
    doc = json.loads(hub.ok("status", "-o", "json").stdout)
    assert set(doc) == {
        "schemaVersion", "generatedAt", "filters", "clusters", "matrix", "totals", "problems",
    }  # fmt: skip
    assert doc["schemaVersion"] == 1
    assert set(doc["clusters"][0]) == {"name", "server", "connection", "applications", "lastSync"}
    assert set(doc["clusters"][0]["applications"]) == {"total", "sync", "health"}
    assert set(doc["matrix"]) == {"clusters", "rows"}
    assert set(doc["totals"]) == {"clusters", "applications", "unassigned"}
    assert no_time(yaml.safe_load(hub.ok("status", "-o", "yaml").stdout)) == no_time(doc)


@pytest.mark.parametrize(
    ("args", "code", "named"),
    [
        ([], 0, []),
        (["--fail-on", "degraded"], FAIL_ON_EXIT_CODE, ["web-west"]),
        (["--fail-on", "outofsync"], FAIL_ON_EXIT_CODE, ["web-west"]),
        (["--fail-on", "unknown"], FAIL_ON_EXIT_CODE, ["tools"]),
        (
            ["--fail-on", "unknown", "--fail-on", "degraded"],
            FAIL_ON_EXIT_CODE,
            ["tools", "web-west"],
        ),
        (["--appset", "api", "--fail-on", "degraded", "--fail-on", "outofsync"], 0, []),
        (["--cluster", "west", "--fail-on", "unknown"], 0, []),
        (["--cluster", "east", "--fail-on", "unknown"], FAIL_ON_EXIT_CODE, ["tools"]),
    ],
)
def test_fail_on_sets_the_exit_code_and_names_the_applications(
    hub: Hub, args: list[str], code: int, named: list[str]
) -> None:
    run = hub("status", *args)
    assert run.exit_code == code, run.output
    for name in named:
        assert f"application {name} " in run.stderr
    assert "CLUSTER" in run.stdout  # the table is printed either way


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "nowhere"], "no cluster named 'nowhere'"),
        (["--appset", "nope"], "no ApplicationSet named 'nope'"),
        (["--watch", "--fail-on", "degraded"], "--watch"),
        (["--fail-on", "broken"], "broken"),
        (["--offline", "--server", "http://127.0.0.1:1"], "--offline"),
    ],
)
def test_bad_input_is_a_usage_error(hub: Hub, args: list[str], message: str) -> None:
    run = hub("status", *args)
    assert run.exit_code == 2
    assert message in run.output


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--cluster", "east"],
        ["app", "list"],
        ["app", "get", "web-west"],
        ["app", "history", "web-west"],
        ["appset", "list"],
        ["appset", "get", "web"],
    ],
)
def test_tables_fit_80_columns_without_colour_in_a_pipe(hub: Hub, args: list[str]) -> None:
    out = hub.ok(*args).stdout
    assert out.strip()
    assert "\x1b[" not in out
    assert max(len(line) for line in out.splitlines()) <= 80, out


def test_the_status_table_shows_counts_matrix_and_totals(hub: Hub) -> None:
    out = hub.ok("status").stdout
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.startswith(("east ", "west "))
    }
    # CLUSTER CONNECTION APPS SYN OOS UNK HEA PRO DEG SUS MIS UNK ...
    assert rows["east"][2:12] == ["3", "2", "0", "1", "1", "1", "0", "0", "0", "1"]
    assert rows["west"][2:12] == ["1", "0", "1", "0", "0", "0", "1", "0", "0", "0"]
    web = next(line for line in out.splitlines() if line.startswith("web "))
    assert web.split()[1:] == ["S/Healthy", "O/Degraded"]
    assert "4 applications" in out


def test_watch_redraws_until_interrupted(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = []

    def sleep(seconds: float) -> None:
        frames.append(seconds)
        if len(frames) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("hub.cli.status.time.sleep", sleep)
    run = hub.ok("status", "--watch", "--interval", "0.5")
    assert run.stdout.count("CLUSTER") == 2
    assert frames == [0.5, 0.5]


def test_a_running_hub_is_found_through_serve_json_and_used(hub: Hub, home: Path) -> None:
    handle = RecordingHub()
    with running_api(home, handle) as url:
        assert find_running_hub(home) is None  # nothing recorded yet
        write_serve_file(home, url=url)
        assert find_running_hub(home) == url
        run = hub.ok("status", "-o", "json")
        table = hub.ok("status").stdout
        explicit = hub.ok("status", "-o", "json", "--server", url)
        offline = hub.ok("status", "--offline").stdout
    doc = json.loads(run.stdout)
    # live connection states prove it came from the hub, not from the registry's last check
    assert {c["name"]: c["connection"]["state"] for c in doc["clusters"]} == {
        "east": "Connected",
        "west": "Unreachable",
    }
    assert "from the running hub" in table
    assert "from the store" in offline
    assert no_time(json.loads(explicit.stdout)) == no_time(doc)
    assert find_running_hub(home) is None  # the API is gone: back to the store


def test_a_serve_file_of_a_dead_process_is_ignored(home: Path) -> None:
    write_serve_file(home, url="http://127.0.0.1:9", pid=2**22 + 12345)
    assert find_running_hub(home) is None


# ---------------------------------------------------------------- hub app / hub appset by NAME


def test_app_list_filters_like_the_api(hub: Hub) -> None:
    def names(*args: str) -> list[str]:
        return [a["name"] for a in json.loads(hub.ok("app", "list", "-o", "json", *args).stdout)]

    assert names() == sorted(APPS)
    assert names("--cluster", "east", "--health", "Unknown") == ["tools"]
    assert names("--appset", "web", "--sync-status", "OutOfSync") == ["web-west"]


def test_app_get_shows_resources_conditions_and_status(hub: Hub) -> None:
    out = hub.ok("app", "get", "web-west").stdout
    assert "OutOfSync" in out and "Degraded" in out and "SyncError: boom" in out
    assert "Deployment" in out and "web-west-config" in out
    doc = json.loads(hub.ok("app", "get", "web-west", "-o", "json").stdout)
    assert {r["kind"] for r in doc["resources"]} == {"Deployment", "ConfigMap"}
    missing = hub("app", "get", "ghost")
    assert missing.exit_code == 1 and "ghost" in missing.stderr


def test_app_history_lists_entries_oldest_first(hub: Hub) -> None:
    doc = json.loads(hub.ok("app", "history", "web-west", "-o", "json").stdout)
    assert [(e["id"], e["phase"]) for e in doc] == [(0, "Failed"), (1, "Succeeded")]
    lines = hub.ok("app", "history", "web-west").stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "FINISHED"]
    assert lines[2].split()[0] == "1"


def test_app_sync_and_rollback_go_to_the_running_hub_with_the_token(hub: Hub, home: Path) -> None:
    handle = RecordingHub()
    with running_api(home, handle) as url:
        write_serve_file(home, url=url)
        hub.ok("app", "sync", "web-east", "--prune")
        hub.ok("app", "rollback", "web-west", "0")
        diff = hub("app", "diff", "web-west")
        synced_diff = hub("app", "diff", "web-east")
        refused = hub("app", "sync", "web-east", "--token", "a-wrong-token-0123456789")
    assert handle.calls == [
        ("sync", "web-east", True, None, "role:admin"),
        ("rollback", "web-west", 0, "role:admin"),
    ]
    assert (diff.exit_code, synced_diff.exit_code) == (1, 0)
    assert "+replicas: 2" in diff.stdout
    assert refused.exit_code == 1 and "token" in refused.stderr


def test_app_sync_without_a_hub_says_how_to_start_one(hub: Hub) -> None:
    run = hub("app", "sync", "web-east")
    assert run.exit_code == 1
    assert "hub serve" in run.stderr


def test_appset_list_and_get(hub: Hub) -> None:
    listing = json.loads(hub.ok("appset", "list", "-o", "json").stdout)
    assert [s["name"] for s in listing] == ["api", "web"]
    out = hub.ok("appset", "get", "web").stdout
    assert "web-east" in out and "web-west" in out
    assert hub("appset", "get", "nope").exit_code == 1


def test_file_based_app_commands_still_need_a_name_or_a_file(hub: Hub) -> None:
    run = hub("app", "diff")
    assert run.exit_code == 2


def test_on_a_terminal_degraded_is_red_and_columns_still_line_up(home: Path) -> None:
    import re

    import click
    from click.testing import CliRunner

    from hub.cli import main

    result = CliRunner().invoke(main, ["--home", str(home), "status"], color=True)
    assert result.exit_code == 0, result.output
    assert "\x1b[31m" in result.output  # red
    plain = click.unstyle(result.output)
    assert max(len(line) for line in plain.splitlines()) <= 80
    header = next(line for line in plain.splitlines() if line.startswith("CLUSTER"))
    for cluster in ("east", "west"):
        line = next(line for line in plain.splitlines() if line.startswith(cluster + " "))
        counts = re.match(r"\S+\s+\S+\s+(\d+)", line)
        assert counts is not None
        # the APPS count ends under the end of its header, colour codes or not
        assert counts.end(1) == header.index("APPS") + len("APPS")


def test_a_finished_operation_is_summed_up_per_phase_and_wave() -> None:
    from hub.cli.status import phase_wave_lines

    def res(phase: str, wave: int, sync: str) -> dict[str, Any]:
        return {"phase": phase, "wave": wave, "sync": sync}

    lines = phase_wave_lines(
        [res("Sync", 1, "Synced"), res("PostSync", 0, "Synced"), res("Sync", 1, "SyncFailed"),
         res("PreSync", 0, "Synced"), res("Sync", -1, "Synced"), res("Sync", 1, "Synced")]
    )  # fmt: skip
    assert lines == [
        "  PreSync wave 0: 1 Synced",
        "  Sync wave -1: 1 Synced",
        "  Sync wave 1: 2 Synced, 1 SyncFailed",
        "  PostSync wave 0: 1 Synced",
    ]
