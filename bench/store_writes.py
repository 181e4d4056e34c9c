"""What serialised writers cost: short write transactions on SQLite and on PostgreSQL.

Each transaction is one ``Store.write()`` with a read and an update of one row (what
most hub writes are). Runs 1 and 4 writer threads against each backend, and on
PostgreSQL also without the transaction-scoped advisory lock (plain READ COMMITTED
``BEGIN``) to show what the lock itself costs. Starts a throwaway PostgreSQL server
(tests/pg.py) on loopback; prints one line per case. No assertions: figures only.

    .venv/bin/python bench/store_writes.py [--n 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub import store as store_module
from hub.db import Connection
from hub.store import Store
from tests.pg import PostgresServer, find_bindir


def run(location: Path | str, threads: int, n: int) -> float:
    """Transactions per second with ``threads`` writers doing ``n`` in all."""
    with Store.open(location, create=True) as s:
        s.set_meta("n", "0")
        per = n // threads

        def work() -> None:
            for _ in range(per):
                with s.write() as db:
                    v = int(db.execute("SELECT value FROM meta WHERE key = 'n'").fetchone()[0])
                    db.execute("UPDATE meta SET value = ? WHERE key = 'n'", (str(v + 1),))

        workers = [threading.Thread(target=work) for _ in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
        final = int(s.get_meta("n") or 0)
    lost = per * threads - final
    return per * threads / elapsed if lost == 0 else -float(lost)


@contextmanager
def without_advisory_lock() -> Iterator[None]:
    original = store_module.begin_write

    def plain(db: Connection) -> None:
        if db.backend == "sqlite":
            original(db)
        else:
            db.execute("BEGIN")

    store_module.begin_write = plain
    try:
        yield
    finally:
        store_module.begin_write = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="write transactions per case")
    args = parser.parse_args()
    server = PostgresServer(find_bindir())
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for threads in (1, 4):
                lite = run(Path(tmp) / f"hub-{threads}.db", threads, args.n)
                print(f"sqlite      {threads} writer(s): {lite:8.0f} tx/s")
                pg = run(server.fresh_url(), threads, args.n)
                print(f"postgresql  {threads} writer(s): {pg:8.0f} tx/s (advisory lock)")
                with without_advisory_lock():
                    bare = run(server.fresh_url(), threads, args.n)
                shown = f"{bare:8.0f} tx/s" if bare >= 0 else f"LOST {-bare:.0f} updates"
                print(f"postgresql  {threads} writer(s): {shown} (no lock: READ COMMITTED)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
