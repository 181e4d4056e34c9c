"""How the fleet's cost grows (issue 12): bench/fleet.py at several sizes, one table, a fit.

Runs ``bench/fleet.py`` once per size (a fresh simulator and hub each time, one after the
other) and prints, per size, the figures issue 12 sets targets for; then fits each cost
with least squares as ``fixed + a x clusters + b x Applications`` (or, when the sizes do not
vary clusters and Applications independently, per Application only) and prints what one
more cluster and one more Application cost: seconds of commit-to-Synced+Healthy, MB of
hub RSS, threads, open files.

    python bench/scaling.py --sizes 100,300,1000 --apps 10
    python bench/scaling.py --sizes 100x10,100x3,300x10 --fleet-args="--sim-processes 2"
    python bench/scaling.py --reuse /tmp/fleet-1000x10.json --sizes 100,300 --apps 10

``--reuse FILE.json`` adds a run made earlier with ``bench/fleet.py --json FILE``
(large runs are too slow to repeat). Every run's output goes to stdout as it comes, and
each run's figures to ``--out DIR`` (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# (label, key in fleet.py's figures, unit)
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("first commit -> Synced+Healthy", "first_commit_to_synced_healthy_s", "s"),
    ("image commit -> Synced+Healthy", "commit_to_synced_healthy_s", "s"),
    ("hub CPU, image commit", "image_commit_hub_cpu_s", "s"),
    ("hub RSS peak", "hub_rss_peak_mb", "MB"),
    ("hub threads peak", "threads_peak", ""),
    ("hub open fds peak", "fds_peak", ""),
    ("GET/LIST per app per resync", "resync_get_list_per_app", ""),
    ("drift heal p50", "drift_heal_p50_s", "s"),
    ("drift heal p99", "drift_heal_p99_s", "s"),
    ("sim CPU, image commit", "sim_image_cpu_s", "s"),
    ("sim loop lag p99, image commit", "sim_image_lag_p99_ms", "ms"),
)
FITTED = (
    "first_commit_to_synced_healthy_s",
    "commit_to_synced_healthy_s",
    "image_commit_hub_cpu_s",
    "hub_rss_peak_mb",
    "threads_peak",
    "fds_peak",
    "sim_image_cpu_s",
)


def parse_size(text: str, apps: int) -> tuple[int, int]:
    clusters, _, per = text.strip().partition("x")
    return int(clusters), int(per) if per else apps


def flatten(figures: dict[str, Any]) -> dict[str, Any]:
    out = dict(figures)
    image = (figures.get("sim") or {}).get("image commit") or {}
    out["sim_image_cpu_s"] = image.get("cpu_s")
    out["sim_image_lag_p99_ms"] = image.get("loop_lag_p99_ms")
    return out


def run_fleet(clusters: int, apps: int, extra: list[str], out: Path) -> dict[str, Any]:
    target = out / f"fleet-{clusters}x{apps}.json"
    cmd = [sys.executable, str(ROOT / "bench" / "fleet.py"), "--clusters", str(clusters),
           "--apps", str(apps), "--json", str(target), *extra]  # fmt: skip
    print(f"\n=== {clusters} clusters x {apps} apps: {shlex.join(cmd)}", flush=True)
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    print(f"=== done in {time.monotonic() - t0:.0f}s", flush=True)
    return dict(json.loads(target.read_text()))


def solve(rows: list[list[float]], ys: list[float]) -> list[float] | None:
    """Least squares by the normal equations (tiny systems; no numpy needed)."""
    k = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(k)] for i in range(k)]
    b = [sum(r[i] * y for r, y in zip(rows, ys, strict=True)) for i in range(k)]
    for col in range(k):  # Gauss-Jordan with partial pivoting
        pivot = max(range(col, k), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-9:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        b[col], b[pivot] = b[pivot], b[col]
        for r in range(k):
            if r != col:
                factor = a[r][col] / a[col][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col], strict=True)]
                b[r] -= factor * b[col]
    return [b[i] / a[i][i] for i in range(k)]


def fit(runs: list[dict[str, Any]], key: str) -> str:
    points = [(r["clusters"], r["clusters"] * r["apps_per_cluster"], r[key]) for r in runs
              if r.get(key) is not None]  # fmt: skip
    if len(points) < 2:
        return "too few runs"
    ys = [float(p[2]) for p in points]
    independent = len(points) >= 3 and len({p[1] / p[0] for p in points}) > 1
    if independent:
        coef = solve([[1.0, float(c), float(a)] for c, a, _ in points], ys)
        if coef is not None:
            fixed, per_cluster, per_app = coef
            return (f"{fixed:+.3g} {per_cluster:+.3g}/cluster {per_app:+.3g}/app "
                    f"(per 1,000 clusters: {1000 * per_cluster:+.3g}; per 1,000 apps: "
                    f"{1000 * per_app:+.3g})")  # fmt: skip
    coef = solve([[1.0, float(a)] for _, a, _ in points], ys)
    if coef is None:
        return "no fit"
    fixed, per_app = coef
    per = points[0][1] / points[0][0]
    return (f"{fixed:+.3g} {per_app:+.3g}/app, i.e. {per * per_app:+.3g}/cluster at "
            f"{per:g} apps each (per 1,000 apps: {1000 * per_app:+.3g}; clusters and apps "
            f"grew together, so their shares are not separable)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="100,300,1000", help="Clusters per run, or CLUSTERSxAPPS (100x3)."
    )
    parser.add_argument("--apps", type=int, default=10, help="Apps per cluster by default.")
    parser.add_argument(
        "--fleet-args",
        default="--no-baseline --drift-samples 10",
        help="Extra arguments for every bench/fleet.py run (one string).",
    )
    parser.add_argument("--reuse", type=Path, action="append", default=[],
                        help="Figures of an earlier bench/fleet.py --json run.")  # fmt: skip
    parser.add_argument("--out", type=Path, help="Directory for each run's figures.")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="hub-scaling-"))
    out.mkdir(parents=True, exist_ok=True)
    runs = [flatten(json.loads(p.read_text())) for p in args.reuse]
    sizes = [parse_size(s, args.apps) for s in args.sizes.split(",") if s.strip()]
    done = {(r["clusters"], r["apps_per_cluster"]) for r in runs}
    for clusters, apps in sizes:
        if (clusters, apps) in done:
            continue
        runs.append(flatten(run_fleet(clusters, apps, shlex.split(args.fleet_args), out)))
    runs.sort(key=lambda r: (r["clusters"], r["apps_per_cluster"]))
    print_table(runs)


def print_table(runs: list[dict[str, Any]]) -> None:
    heads = [f"{r['clusters']} x {r['apps_per_cluster']}" for r in runs]
    width = max(len(label) for label, _, _ in FIGURES) + 2
    print("\nfigure".ljust(width + 1) + "".join(f"{h:>14}" for h in heads))
    for label, key, unit in FIGURES:
        cells = []
        for r in runs:
            value = r.get(key)
            if value is None:
                cells.append(f"{'-':>14}")
            else:
                text = _num(value)
                cells.append(f"{text:>12}{unit:>2}" if unit else f"{text:>14}")
        print(label.ljust(width) + "".join(cells))
    print("\nleast-squares fit (value = fixed + per cluster x clusters + per app x apps):")
    for key in FITTED:
        label = next(label for label, k, _ in FIGURES if k == key)
        print(f"  {label}: {fit(runs, key)}")
    print("\ngrowth exponent k (value ~ size^k: 1 is linear) between runs differing in one size:")
    for key in FITTED:
        label = next(label for label, k, _ in FIGURES if k == key)
        print(f"  {label}: {', '.join(growth(runs, key)) or '-'}")


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def growth(runs: list[dict[str, Any]], key: str) -> list[str]:
    """log(v2/v1) / log(s2/s1) for pairs of runs that differ in clusters only (same apps
    per cluster) or in apps per cluster only (same clusters)."""
    out = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            va, vb = a.get(key), b.get(key)
            if not va or not vb or va <= 0 or vb <= 0:
                continue
            if a["apps_per_cluster"] == b["apps_per_cluster"] and a["clusters"] != b["clusters"]:
                what, sa, sb = "clusters", a["clusters"], b["clusters"]
            elif a["clusters"] == b["clusters"] and a["apps_per_cluster"] != b["apps_per_cluster"]:
                what, sa, sb = "apps per cluster", a["apps_per_cluster"], b["apps_per_cluster"]
            else:
                continue
            k = math.log(vb / va) / math.log(sb / sa)
            out.append(f"k={k:.2f} over {what} {sa}->{sb}")
    return out


if __name__ == "__main__":
    main()
