"""Benchmark: RBAC decisions per second with a 1,000-line policy.

Builds a policy like a large organisation's: 200 projects, each with a deployer and a
viewer role (``proj-N/*`` objects), users bound to them with ``g`` lines and a few
``deny`` lines, 1,000 lines in all, evaluated by casbin under Argo CD's model. Prints the
policy load time and the decisions per second, uncached (every request evaluated by
casbin) and through the ``Authorizer``'s decision cache (a dashboard asking again).
Times are this process's CPU time, so that neighbours on a shared machine do not count.

    python bench/rbac.py [--lines 1000] [--requests 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from hub.auth.policy import Authorizer, RbacConfig, casbin_enforcer, parse_policy_csv


def policy_text(lines: int) -> str:
    out: list[str] = []
    project = 0
    while len(out) < lines:
        p = f"proj-{project}"
        out += [
            f"p, role:{p}-deployer, applications, sync, {p}/*, allow",
            f"p, role:{p}-deployer, applications, get, {p}/*, allow",
            f"p, role:{p}-viewer, applications, get, {p}/*, allow",
            f"g, user-{project}, role:{p}-deployer",
            f"p, user-{project}, applications, sync, {p}/frozen-*, deny",
        ]
        project += 1
    return "\n".join(out[:lines]) + "\n"


def requests(n: int, projects: int, seed: int = 1) -> list[tuple[str, str, str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        n = rng.randrange(projects)
        user = f"user-{n}"
        p = f"proj-{n if rng.random() < 0.5 else rng.randrange(projects)}"  # half: its own
        app = rng.choice(["web", "api", "frozen-db"])
        out.append((user, "applications", rng.choice(["get", "sync"]), f"{p}/{app}"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    text = policy_text(args.lines)
    started = time.process_time()
    policy = parse_policy_csv(text, "bench")
    authz = Authorizer.build(RbacConfig(default_role="", policy=policy))
    load_s = time.process_time() - started
    projects = max(1, args.lines // 5)
    reqs = requests(args.requests, projects)

    subjects = sorted({r[0] for r in reqs})
    t0 = time.process_time()
    for subject in subjects:  # the first decision of a subject builds its enforcer
        authz.decide_uncached(subject, "applications", "get", "proj-0/web")
    cold_ms = (time.process_time() - t0) / len(subjects) * 1000

    uncached = []
    for _ in range(args.runs):
        t0 = time.process_time()
        allowed = sum(authz.decide_uncached(*r).allowed for r in reqs)
        uncached.append(len(reqs) / (time.process_time() - t0))
    for r in reqs:
        authz.decide(*r)  # warm the cache
    cached = []
    for _ in range(args.runs):
        t0 = time.process_time()
        for r in reqs:
            authz.decide(*r)
        cached.append(len(reqs) / (time.process_time() - t0))

    print(
        f"policy: {len(policy.rules)} p lines + {len(policy.groups)} g lines "
        f"(+ built-in roles), loaded in {load_s * 1000:.0f} ms"
    )
    print(f"requests: {len(reqs)} ({len(set(reqs))} distinct), {allowed} allowed")
    # The baseline: one casbin enforcer over the whole policy (what the per-subject index
    # avoids), on the first 100 requests only: it is slow.
    whole = casbin_enforcer(authz.policy.rules, authz.policy.groups)
    t0 = time.process_time()
    for r in reqs[:100]:
        whole.enforce(*r)
    baseline = 100 / (time.process_time() - t0)

    print(f"decisions/s, one casbin enforcer over the whole policy: {baseline:,.0f}")
    print(f"first decision of a subject (its enforcer built): {cold_ms:.2f} ms")
    print(f"decisions/s, casbin (uncached): median {statistics.median(uncached):,.0f}")
    print(f"decisions/s, Authorizer cache hit: median {statistics.median(cached):,.0f}")


if __name__ == "__main__":
    main()
