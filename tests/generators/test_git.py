"""The git generator against real repositories created in the test."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from generators.expand import Context, generate
from generators.git import doublestar_match, path_match, pathspec_match
from hub.repos import LocalRepoReader, RepoMapping
from tests.generators.conftest import REPO_URL, appset, params_of

MakeContext = Callable[..., Context]

TREE = {
    "apps/guestbook/kustomization.yaml": "",
    "apps/helm-guestbook/Chart.yaml": "",
    "apps/nested/deep/app/kustomization.yaml": "",
    "apps/.hidden/kustomization.yaml": "",
    ".github/workflows/ci.yaml": "",
    "p1/app4/x.yaml": "",
    "a-c/x": "",
    "a/b/x": "",
    "README.md": "",
}


def dirs(*items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"git": {"repoURL": REPO_URL, "revision": "HEAD", "directories": list(items), **extra}}


def files(*items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"git": {"repoURL": REPO_URL, "revision": "HEAD", "files": list(items), **extra}}


def paths(params: list[dict[str, Any]]) -> list[str]:
    return [p["path"] if isinstance(p["path"], str) else p["path"]["path"] for p in params]


def run_with(ctx: Context, gen: dict[str, Any], go: bool = False) -> list[dict[str, Any]]:
    return params_of(generate(appset([gen], go=go), ctx))


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([{"path": "*"}], ["a", "a-c", "apps", "p1"]),
        ([{"path": "apps/*"}], ["apps/guestbook", "apps/helm-guestbook", "apps/nested"]),
        ([{"path": "apps/*/*"}], ["apps/nested/deep"]),
        ([{"path": "p1"}, {"path": "p1/*"}], ["p1", "p1/app4"]),
        (
            [{"path": "apps/*"}, {"path": "apps/helm-*", "exclude": True}],
            ["apps/guestbook", "apps/nested"],
        ),
        (
            [{"path": "apps/helm-*", "exclude": True}, {"path": "apps/*"}],
            ["apps/guestbook", "apps/nested"],
        ),
        ([{"path": "apps/*", "exclude": True}], []),
        ([{"path": "apps/[gh]*"}], ["apps/guestbook", "apps/helm-guestbook"]),
        ([{"path": "apps/?uestbook"}], ["apps/guestbook"]),
        (
            [{"path": "*"}, {"path": "a*/*"}],
            [
                "a",
                "a/b",
                "a-c",
                "apps",
                "apps/guestbook",
                "apps/helm-guestbook",
                "apps/nested",
                "p1",
            ],
        ),
        ([{"path": "nothing/*"}], []),
    ],
)
def test_directories_match_every_directory_with_exclude_winning(
    repo_context: MakeContext, items: list[dict[str, Any]], expected: list[str]
) -> None:
    params = run_with(repo_context(TREE), dirs(*items))
    assert paths(params) == expected


def test_hidden_directories_and_everything_below_them_are_skipped(
    repo_context: MakeContext,
) -> None:
    params = run_with(repo_context(TREE), dirs({"path": "*"}, {"path": "*/*"}, {"path": "*/*/*"}))
    assert not [p for p in paths(params) if "hidden" in p or "github" in p]


def test_directory_params_in_fast_mode(repo_context: MakeContext) -> None:
    [params] = run_with(repo_context(TREE), dirs({"path": "apps/nested/deep/app"}))
    assert params == {
        "path": "apps/nested/deep/app",
        "path.basename": "app",
        "path.basenameNormalized": "app",
        "path[0]": "apps",
        "path[1]": "nested",
        "path[2]": "deep",
        "path[3]": "app",
    }


def test_directory_params_in_go_mode_with_a_prefix(repo_context: MakeContext) -> None:
    [params] = run_with(
        repo_context({"My_Apps/x/f": ""}), dirs({"path": "My_Apps"}, pathParamPrefix="src"), go=True
    )
    assert params == {
        "src": {
            "path": {
                "path": "My_Apps",
                "basename": "My_Apps",
                "basenameNormalized": "my-apps",
                "segments": ["My_Apps"],
            }
        }
    }


def test_fast_mode_prefix_prefixes_every_path_key(repo_context: MakeContext) -> None:
    [params] = run_with(repo_context(TREE), dirs({"path": "p1"}, pathParamPrefix="src"))
    assert set(params) == {
        "src.path",
        "src.path.basename",
        "src.path.basenameNormalized",
        "src.path[0]",
    }


def test_directory_values_are_rendered_against_the_path(repo_context: MakeContext) -> None:
    [params] = run_with(
        repo_context(TREE), dirs({"path": "p1/*"}, values={"ns": "team-{{path.basename}}"})
    )
    assert params["values.ns"] == "team-app4"


def test_a_bad_directory_glob_is_an_error_naming_the_field(repo_context: MakeContext) -> None:
    result = generate(
        appset([dirs({"path": "apps/*"}, {"path": "apps/[z-a]"})]), repo_context(TREE)
    )
    assert result.generation_failed
    assert "spec.generators[0].git.directories[1].path" in result.conditions[0].message


CONFIGS = {
    "cluster-config/prod/config.json": '{"cluster": {"name": "prod", "replicas": 1000000, "flag": true, "none": null, "list": ["a", "b"], "empty": {}}}',
    "cluster-config/dev/config.json": '{"cluster": {"name": "dev"}, "path": "from-file"}',
    "cluster-config/eu/west/config.json": '{"cluster": {"name": "eu-west"}}',
    "cluster-config/list.yaml": "- name: one\n- name: two\n",
    "cluster-config/empty.yaml": "",
    "cluster-config/none.yaml": "[]\n",
    "root.json": '{"name": "root"}',
}


def test_file_params_are_flattened_with_go_formatting_and_path_params_last(
    repo_context: MakeContext,
) -> None:
    params = run_with(repo_context(CONFIGS), files({"path": "cluster-config/prod/config.json"}))
    assert params == [
        {
            "cluster.name": "prod",
            "cluster.replicas": "1e+06",
            "cluster.flag": "true",
            "cluster.none": "<nil>",
            "cluster.list.0": "a",
            "cluster.list.1": "b",
            "path": "cluster-config/prod",
            "path.basename": "prod",
            "path.basenameNormalized": "prod",
            "path.filename": "config.json",
            "path.filenameNormalized": "config.json",
            "path[0]": "cluster-config",
            "path[1]": "prod",
        }
    ]


def test_a_file_key_named_path_is_overwritten_by_the_path_params(repo_context: MakeContext) -> None:
    [params] = run_with(repo_context(CONFIGS), files({"path": "cluster-config/dev/config.json"}))
    assert params["path"] == "cluster-config/dev"


@pytest.mark.parametrize(
    ("doublestar", "pattern", "expected"),
    [
        (
            False,
            "cluster-config/*/config.json",
            ["cluster-config/dev", "cluster-config/eu/west", "cluster-config/prod"],
        ),
        (True, "cluster-config/*/config.json", ["cluster-config/dev", "cluster-config/prod"]),
        (
            True,
            "cluster-config/**/config.json",
            ["cluster-config/dev", "cluster-config/eu/west", "cluster-config/prod"],
        ),
        (
            False,
            "*.json",
            ["cluster-config/dev", "cluster-config/eu/west", "cluster-config/prod", "."],
        ),
        (True, "*.json", ["."]),
        (
            True,
            "**/*.json",
            ["cluster-config/dev", "cluster-config/eu/west", "cluster-config/prod", "."],
        ),
        (False, "cluster-config/eu", ["cluster-config/eu/west"]),
    ],
)
def test_file_globbing_default_and_doublestar(
    repo_context: MakeContext, doublestar: bool, pattern: str, expected: list[str]
) -> None:
    ctx = repo_context(CONFIGS, new_git_file_globbing=doublestar)
    assert paths(run_with(ctx, files({"path": pattern}))) == expected


def test_files_are_unioned_then_excluded_and_processed_in_sorted_order(
    repo_context: MakeContext,
) -> None:
    gen = files(
        {"path": "cluster-config/prod/*.json"},
        {"path": "cluster-config/*/config.json"},
        {"path": "cluster-config/eu/**", "exclude": True},
    )
    assert paths(run_with(repo_context(CONFIGS), gen)) == [
        "cluster-config/dev",
        "cluster-config/prod",
    ]


def test_lists_of_objects_give_one_set_each_and_empty_files_or_lists_give_path_params(
    repo_context: MakeContext,
) -> None:
    params = run_with(repo_context(CONFIGS), files({"path": "cluster-config/*.yaml"}))
    assert [(p.get("name"), p["path.filename"]) for p in params] == [
        (None, "empty.yaml"),
        ("one", "list.yaml"),
        ("two", "list.yaml"),
        (None, "none.yaml"),
    ]


def test_go_mode_keeps_files_nested_and_typed(repo_context: MakeContext) -> None:
    [params] = run_with(
        repo_context(CONFIGS), files({"path": "cluster-config/prod/config.json"}), go=True
    )
    assert params["cluster"]["replicas"] == 1000000.0
    assert params["cluster"]["none"] is None and params["cluster"]["empty"] == {}
    assert params["path"] == {
        "path": "cluster-config/prod",
        "basename": "prod",
        "basenameNormalized": "prod",
        "filename": "config.json",
        "filenameNormalized": "config.json",
        "segments": ["cluster-config", "prod"],
    }


def test_file_values_see_the_file_content(repo_context: MakeContext) -> None:
    gen = files(
        {"path": "cluster-config/dev/config.json"},
        values={"who": "{{cluster.name}}@{{path.basename}}"},
    )
    [params] = run_with(repo_context(CONFIGS), gen)
    assert params["values.who"] == "dev@dev"


@pytest.mark.parametrize("content", ["a: [", "just a string", "- 1\n- 2\n"])
def test_an_unparsable_file_is_an_error_naming_file_and_repo(
    repo_context: MakeContext, content: str
) -> None:
    result = generate(appset([files({"path": "bad.yaml"})]), repo_context({"bad.yaml": content}))
    assert result.generation_failed
    message = result.conditions[0].message
    assert "'bad.yaml'" in message and REPO_URL in message


def test_only_the_first_document_of_a_file_is_read_and_the_rest_not_parsed(
    repo_context: MakeContext,
) -> None:
    context = repo_context({"two.yaml": "name: one\n---\na: [\n"})
    [params] = run_with(context, files({"path": "two.yaml"}))
    assert params["name"] == "one"


def test_revisions_are_read_without_a_checkout(make_repo: Callable[[dict[str, str]], Path]) -> None:
    root = make_repo({"v1/app/f": ""})
    git = ["git", "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run([*git, "tag", "v1"], cwd=root, check=True)
    subprocess.run([*git, "mv", "v1", "v2"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "rename"], cwd=root, check=True)
    (root / "v2" / "untracked").mkdir()  # the working tree is never looked at
    with LocalRepoReader(RepoMapping(default=root)) as reader:
        ctx = Context(repo_reader=reader)
        gen = dirs({"path": "*"})
        assert paths(run_with(ctx, gen)) == ["v2"]
        gen["git"]["revision"] = "v1"
        assert paths(run_with(ctx, gen)) == ["v1"]
        gen["git"]["revision"] = "no-such-branch"
        result = generate(appset([gen]), ctx)
        assert result.generation_failed and "no-such-branch" in result.conditions[0].message


def test_without_a_repository_the_generator_says_how_to_provide_one() -> None:
    result = generate(appset([dirs({"path": "*"})]))
    assert result.generation_failed and "--repo" in result.conditions[0].message


@pytest.mark.parametrize(
    ("pattern", "name", "go", "git", "ds"),
    [
        ("*", "a/b", False, True, False),
        ("a/*.yaml", "a/b/c.yaml", False, True, False),
        ("a/**/c.yaml", "a/c.yaml", False, False, True),
        ("{a,b}/x", "b/x", False, False, True),
        ("[!a]x", "bx", False, True, True),
        ("[^a]x", "bx", True, True, True),
        ("a\\*", "a*", True, True, True),
    ],
)
def test_glob_flavours(pattern: str, name: str, go: bool, git: bool, ds: bool) -> None:
    assert (
        path_match(pattern, name),
        pathspec_match(pattern, name),
        doublestar_match(pattern, name),
    ) == (go, git, ds)


def test_go_mode_files_with_a_prefix_nest_the_path_params(repo_context: MakeContext) -> None:
    gen = files({"path": "cluster-config/dev/config.json"}, pathParamPrefix="cfg")
    [params] = run_with(repo_context(CONFIGS), gen, go=True)
    assert params["path"] == "from-file"  # the file's own key survives under a prefix
    assert params["cfg"]["path"]["basename"] == "dev"
    assert params["cfg"]["path"]["filename"] == "config.json"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("match", [path_match, pathspec_match, doublestar_match])
def test_glob_matching_is_linear_in_the_file_name(match: Callable[[str, str], bool]) -> None:
    # Python's backtracking re needed C(200, 10) steps here; the globs run on RE2
    assert not match("*a*a*a*a*a*a*a*a*a*a*b", "a" * 200)
    assert match("*a*a*a*a*a*a*a*a*a*a*b", "a" * 200 + "b")
