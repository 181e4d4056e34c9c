"""Writers of one process queue on a thread lock before SQLite's (hub.store): they hand
over at once instead of sleeping in SQLite's busy handler, and a writer never fails with
"database is locked" because another thread of its process holds the write lock longer
than the busy timeout. Writers of another process still wait on SQLite's busy timeout.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

import hub.store as store_module
from hub.db import WouldWait
from hub.store import Store
from hub.sync.operation import INLINE_RETRY_S, store_call

T = TypeVar("T")


def _hold_write(store: Store, key: str, hold_s: float, errors: list[BaseException]) -> None:
    try:
        with store.write() as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, "x"))
            time.sleep(hold_s)
    except BaseException as exc:  # collected: the test fails on any
        errors.append(exc)


def test_threads_of_one_process_wait_for_each_other_past_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy timeout far shorter than one writer's transaction: without the process
    # lock the waiting thread gives up with "database is locked".
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 50)
    first = Store.open(tmp_path / "state.db", create=True)
    second = Store.open(tmp_path / "state.db")  # another Store object on the same file
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_hold_write, args=(first, "a", 0.4, errors)),
        threading.Thread(target=_hold_write, args=(second, "b", 0.4, errors)),
        threading.Thread(target=_hold_write, args=(first, "c", 0.0, errors)),
    ]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert errors == []
    assert {first.get_meta(k) for k in "abc"} == {"x"}
    first.close()
    second.close()


def _assert_another_thread_can_write(store: Store) -> None:
    done = threading.Event()

    def write_next() -> None:
        store.set_meta("next", "y")
        done.set()

    threading.Thread(target=write_next).start()
    assert done.wait(5), "a writer after a failed write still waits: the lock was kept"


def test_a_failed_write_releases_the_lock_and_rolls_back(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db", create=True)
    with pytest.raises(RuntimeError), store.write() as db:
        db.execute("INSERT INTO meta (key, value) VALUES ('gone', 'x')")
        raise RuntimeError("boom")
    assert store.get_meta("gone") is None
    _assert_another_thread_can_write(store)
    store.close()


def test_another_process_still_waits_on_sqlites_lock(tmp_path: Path) -> None:
    # The thread lock is per process: a plain connection (standing for another process)
    # holding the write lock makes this process's writer wait on the busy timeout.
    store = Store.open(tmp_path / "state.db", create=True)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    errors: list[BaseException] = []
    writer = threading.Thread(target=_hold_write, args=(store, "late", 0.0, errors))
    writer.start()
    time.sleep(0.3)
    assert writer.is_alive(), "the writer did not wait for the other connection's lock"
    other.execute("COMMIT")
    writer.join(10)
    assert errors == [] and store.get_meta("late") == "x"
    other.close()
    store.close()


# ---------------------------------------------------------------- call_inline


def _holding_thread(
    store: Store, release: threading.Event, held: threading.Event
) -> threading.Thread:
    def hold() -> None:
        with store.write() as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('holder', 'x')")
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(5)
    return thread


def test_call_inline_runs_on_the_calling_thread(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db", create=True)
    seen: list[threading.Thread] = []

    def work() -> str | None:
        seen.append(threading.current_thread())
        store.set_meta("k", "v")
        return store.get_meta("k")

    assert store.call_inline(work) == "v"
    assert seen == [threading.current_thread()]
    store.close()


def test_call_inline_would_wait_for_a_writer_of_this_process_and_writes_nothing(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "state.db", create=True)
    release, held = threading.Event(), threading.Event()
    holder = _holding_thread(store, release, held)
    reads: list[str | None] = []

    def work() -> None:
        reads.append(store.get_meta("k"))  # reads need no lock: they run
        store.set_meta("k", "inline")

    with pytest.raises(WouldWait):
        store.call_inline(work)
    assert reads == [None]
    release.set()
    holder.join()
    assert store.get_meta("k") is None
    store.call_inline(work)  # the lock is free again: done inline
    assert store.get_meta("k") == "inline"
    store.close()


def test_call_inline_would_wait_for_another_process_at_once(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db", create=True)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(WouldWait):
        store.call_inline(lambda: store.set_meta("k", "inline"))
    assert time.monotonic() - started < 5  # no busy wait (the timeout is 30 s)
    # The busy timeout is back for ordinary writers: this one waits for the other.
    errors: list[BaseException] = []
    writer = threading.Thread(target=_hold_write, args=(store, "after", 0.0, errors))
    writer.start()
    time.sleep(0.3)
    assert writer.is_alive()
    other.execute("COMMIT")
    writer.join(10)
    assert errors == [] and store.get_meta("after") == "x" and store.get_meta("k") is None
    other.close()
    store.close()


def test_an_inline_call_s_later_writes_and_its_thread_s_others_still_wait(
    tmp_path: Path,
) -> None:
    """The connection of ``call_inline`` has no SQLite busy timeout (its first write must
    refuse at once): its other statements wait in Python instead, for as long."""
    store = Store.open(tmp_path / "state.db", create=True)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None, check_same_thread=False)
    committed = threading.Event()

    def hold_then_commit() -> None:
        other.execute("BEGIN IMMEDIATE")  # another process takes the write lock
        threading.Timer(0.3, lambda: (other.execute("COMMIT"), committed.set())).start()

    def work() -> None:
        store.set_meta("first", "x")  # the first write: the lock is free
        hold_then_commit()
        store.set_meta("second", "x")  # waits for the other process, then writes

    store.call_inline(work)
    assert committed.is_set() and store.get_meta("second") == "x"

    committed.clear()
    hold_then_commit()
    store.set_meta("plain", "x")  # an ordinary write on the same thread's connection
    assert committed.is_set() and store.get_meta("plain") == "x"
    other.close()
    store.close()


def test_a_failed_inline_write_rolls_back_and_frees_the_lock(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db", create=True)

    def broken() -> None:
        with store.write() as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('gone', 'x')")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.call_inline(broken)
    assert store.get_meta("gone") is None
    _assert_another_thread_can_write(store)
    store.close()


def test_only_sqlite_runs_calls_inline(db_location: Path | str) -> None:
    store = Store.open(db_location, create=True)
    if store.backend == "sqlite":
        store.call_inline(lambda: store.set_meta("k", "v"))
        assert store.get_meta("k") == "v"
    else:  # a PostgreSQL round trip would hold the event loop
        with pytest.raises(WouldWait):
            store.call_inline(lambda: store.set_meta("k", "v"))
        assert store.get_meta("k") is None
    store.close()


# ---------------------------------------------------------------- store_call


class _Busy:
    """An InlineStore whose lock is taken for the first ``busy`` tries."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.tries = 0

    def call_inline(self, fn: Callable[[], T]) -> T:
        self.tries += 1
        if self.tries <= self.busy:
            raise WouldWait
        return fn()


def test_a_store_call_tries_inline_again_after_a_pause_then_goes_to_a_thread() -> None:
    where: list[threading.Thread] = []

    def fn() -> str:
        where.append(threading.current_thread())
        return "done"

    async def main() -> None:
        briefly = _Busy(busy=len(INLINE_RETRY_S))
        assert await store_call(briefly, fn, None) == "done"
        assert briefly.tries == len(INLINE_RETRY_S) + 1
        assert where[-1] is threading.current_thread()  # inline in the end
        always = _Busy(busy=100)
        assert await store_call(always, fn, None) == "done"
        assert always.tries == len(INLINE_RETRY_S) + 1
        assert where[-1] is not threading.current_thread()  # in a thread
        assert await store_call(None, fn, None) == "done"
        assert where[-1] is not threading.current_thread()  # no inline store: a thread

    anyio.run(main)


def test_a_postgresql_writer_stalled_in_its_transaction_is_cut_off_and_frees_the_lock(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer that stops between two statements (SIGSTOP, a hung host) held the write
    # lock, and with it every other writer of the fleet, until TCP noticed.
    import hub.db

    monkeypatch.setattr(hub.db, "IDLE_IN_TRANSACTION_S", 1)
    stalled, other = Store.open(postgres_url, create=True), Store.open(postgres_url)
    resumed = threading.Event()
    errors: list[BaseException] = []

    def stall() -> None:
        try:
            with stalled.write() as db:
                db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("stalled", "x"))
                time.sleep(4)  # idle in its transaction, the lock held
                resumed.set()
        except BaseException as exc:  # the server ended the session meanwhile
            errors.append(exc)
        finally:
            resumed.set()

    thread = threading.Thread(target=stall)
    thread.start()
    time.sleep(0.3)
    with other.write() as db:  # waits for the lock: the cut-off, not the stalled writer
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("other", "y"))
    assert not resumed.is_set(), "the other writer waited for the stalled one to finish"
    thread.join()
    assert len(errors) == 1 and "state database" in str(errors[0])
    assert other.get_meta("other") == "y"
    assert other.get_meta("stalled") is None  # its transaction was rolled back, not kept
    stalled.close()
    other.close()
