"""Argo CD's RBAC model as casbin evaluates it: globs, deny over allow, the default
role, project roles, and errors that name the bad line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.auth.policy import (
    Authorizer,
    PolicyError,
    RbacConfig,
    load_rbac_config,
    parse_policy_csv,
)

ORG = """
# Argo CD's documented example
p, role:org-admin, applications, *, */*, allow
p, role:org-admin, clusters, get, *, allow
p, role:staging-deployer, applications, sync, staging/*, allow
p, alice, applications, sync, staging/payments, deny
g, alice, role:staging-deployer
g, bob, role:org-admin
"""


def authz(text: str = ORG, default: str = "", projects: Any = ()) -> Authorizer:
    return Authorizer.build(
        RbacConfig(default_role=default, policy=parse_policy_csv(text, "rbac.csv")), projects
    )


def test_a_glob_object_covers_every_project_and_application() -> None:
    a = authz()
    assert a.can("bob", "applications", "delete", "prod/web")
    assert a.can("bob", "applications", "sync", "staging/api")
    assert not a.can("bob", "applicationsets", "delete", "prod/web")


def test_a_project_glob_covers_only_that_project() -> None:
    a = authz()
    assert a.can("alice", "applications", "sync", "staging/web")
    assert not a.can("alice", "applications", "sync", "prod/web")
    assert not a.can("alice", "applications", "delete", "staging/web")


def test_a_deny_line_overrides_an_allow_and_is_named() -> None:
    a = authz()
    decision = a.decide("alice", "applications", "sync", "staging/payments")
    assert not decision.allowed
    assert decision.rule == "p, alice, applications, sync, staging/payments, deny"
    assert "alice may not sync applications staging/payments" in decision.message()


def test_nobody_gets_anything_without_a_line_or_a_default() -> None:
    a = authz()
    decision = a.decide("carol", "applications", "get", "staging/web")
    assert not decision.allowed and decision.rule is None
    assert "no policy line allows it" in decision.message()
    assert not a.can("", "applications", "get", "staging/web")


def test_the_default_role_applies_to_everyone_including_anonymous() -> None:
    a = authz(default="role:readonly")
    assert a.can("carol", "applications", "get", "any/app")
    assert a.can("", "clusters", "get", "east")
    assert not a.can("carol", "applications", "sync", "any/app")


def test_builtin_admin_may_do_everything_readonly_only_reads() -> None:
    a = authz("")
    for resource, obj in (("applications", "p/a"), ("clusters", "east"), ("audit", "*")):
        assert a.can("role:admin", resource, "get", obj)
    assert a.can("role:admin", "applications", "sync", "p/a")
    assert a.can("role:readonly", "applications", "get", "p/a")
    assert not a.can("role:readonly", "applications", "sync", "p/a")
    assert not a.can("role:readonly", "audit", "get", "*")


TEAM_A = (
    "team-a",
    {
        "spec": {
            "roles": [
                {
                    "name": "deployer",
                    "policies": [
                        "p, proj:team-a:deployer, applications, sync, team-a/*, allow",
                        "p, proj:team-a:deployer, applications, get, team-a/*, allow",
                        # another project's objects: dropped, as Argo CD refuses them
                        "p, proj:team-a:deployer, applications, sync, team-b/*, allow",
                        "p, proj:team-b:deployer, applications, sync, team-a/*, allow",
                    ],
                    "groups": ["team-a-devs"],
                }
            ]
        }
    },
)


def test_project_roles_grant_only_their_own_projects_objects() -> None:
    a = authz("g, dave, team-a-devs\n", projects=[TEAM_A])
    assert a.can("proj:team-a:deployer", "applications", "sync", "team-a/web")
    assert not a.can("proj:team-a:deployer", "applications", "sync", "team-b/web")
    assert not a.can("proj:team-b:deployer", "applications", "sync", "team-a/web")
    assert a.can("dave", "applications", "sync", "team-a/web")  # through the role's group
    assert len(a.problems) == 2
    assert all("AppProject team-a spec.roles[0].policies[" in p for p in a.problems)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("p, alice, applications, sync, */*", "6 fields"),
        ("p, alice, applications, sync, */*, maybe", "allow or deny"),
        ("p, alice, aplications, sync, */*, allow", "unknown resource 'aplications'"),
        ("p, , applications, sync, */*, allow", "subject is empty"),
        ("g, alice", "3 fields"),
        ("x, alice, role:admin", "starts with p or g"),
        ('p, "alice, applications', "6 fields"),
    ],
)
def test_a_bad_line_is_an_error_naming_the_file_and_the_line(line: str, says: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy_csv(f"# ok\n\n{line}\n", "/h/rbac.csv")
    assert "/h/rbac.csv line 3" in str(err.value)
    assert says in str(err.value)


def test_the_home_files_set_the_default_and_the_lines(tmp_path: Path) -> None:
    assert load_rbac_config(tmp_path).default_role == "role:readonly"  # unconfigured
    (tmp_path / "rbac.yaml").write_text(
        "policy.default: ''\npolicy.csv: |\n  g, erin, role:admin\n"
    )
    (tmp_path / "rbac.csv").write_text("g, frank, role:readonly\n")
    config = load_rbac_config(tmp_path)
    assert config.default_role == ""
    assert [g.member for g in config.policy.groups] == ["erin", "frank"]
    (tmp_path / "rbac.yaml").write_text("policy.defualt: role:readonly\n")
    with pytest.raises(PolicyError, match=r"unknown key 'policy\.defualt'"):
        load_rbac_config(tmp_path)


@given(st.text(max_size=200))
def test_any_text_parses_or_fails_with_a_policy_error(text: str) -> None:
    try:
        parsed = parse_policy_csv(text, "fuzz")
    except PolicyError as exc:
        assert str(exc).startswith("fuzz line ")
    else:
        authz_ = Authorizer.build(RbacConfig(default_role="", policy=parsed))
        authz_.can("someone", "applications", "get", "p/a")


def test_the_per_subject_index_decides_as_one_enforcer_over_the_whole_policy() -> None:
    import random

    from hub.auth.policy import BUILTIN, casbin_enforcer

    text = "\n".join(
        line
        for n in range(20)
        for line in (
            f"p, role:p{n}, applications, sync, p{n}/*, allow",
            f"p, role:p{n}, applications, *, p{n}/admin-*, deny",
            f"g, u{n}, role:p{n}",
            f"g, u{n}, role:p{(n + 1) % 20}",
            f"g, role:p{n}, role:readonly",
            f"p, u{n}, clusters, get, c{n}, allow",
        )
    )
    a = authz(text)
    whole = casbin_enforcer(a.policy.rules, a.policy.groups)
    rng = random.Random(7)
    assert len(a.policy.rules) > len(BUILTIN.rules)
    for _ in range(500):
        n = rng.randrange(22)
        request = (
            rng.choice([f"u{n}", f"role:p{n}", "role:admin", "nobody"]),
            rng.choice(["applications", "clusters"]),
            rng.choice(["get", "sync", "delete"]),
            rng.choice([f"p{rng.randrange(20)}/web", f"p{n}/admin-db", f"c{n}"]),
        )
        assert a.decide_uncached(*request).allowed == whole.enforce(*request), request


def test_a_running_hub_picks_up_policy_edits_and_keeps_the_last_good_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    from hub.auth.policy import PolicyCache
    from hub.home import init_home, open_store

    home = tmp_path / "home"
    init_home(home, env={})
    (home / "rbac.yaml").write_text("policy.default: ''\n")
    csv_file = home / "rbac.csv"
    csv_file.write_text("g, gina, role:admin\n")
    with open_store(home) as store:
        cache = PolicyCache(home, store)
        assert cache.current().can("gina", "applications", "sync", "p/a")

        def edit(text: str, tick: int) -> None:
            csv_file.write_text(text)
            os.utime(csv_file, ns=(tick * 10**9, tick * 10**9))  # a distinct mtime

        edit("g, gina, role:readonly\n", 1)
        assert not cache.current().can("gina", "applications", "sync", "p/a")
        edit("g, gina, role:admin\np, broken\n", 2)
        kept = cache.current()
        assert not kept.can("gina", "applications", "sync", "p/a")  # the last good policy
        assert cache.error is not None and "line 2" in cache.error
        assert "RBAC policy not reloaded" in caplog.text
        edit("g, gina, role:admin\n", 3)
        assert cache.current().can("gina", "applications", "sync", "p/a")
        assert cache.error is None


@pytest.mark.parametrize(
    ("value", "pattern", "matches"),
    [
        ("team-a/web", "*/*", True),
        ("team-a/web", "*", True),
        ("team-a/web", "team-a/*", True),
        ("team-b/web", "team-a/*", False),
        ("team-a/web-1", "team-a/web-?", True),
        ("prod/api", "{prod,staging}/*", True),
        ("staging/api", "{prod,staging}/*", True),
        ("dev/api", "{prod,staging}/*", False),
        ("action/restart", "action/*", True),
        ("a/b", "[ab]/b", True),
    ],
)
def test_globs_as_argo_cd_matches_them(value: str, pattern: str, matches: bool) -> None:
    from hub.auth.policy import glob_match

    assert glob_match(value, pattern) is matches
