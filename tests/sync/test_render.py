"""Rendering a source directory: plain manifests and Kustomize, on real files."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.sync.model import ApplicationSource, DirectorySource, HelmSource, RenderError
from hub.sync.render import (
    PARSED_FILES,
    ParsedFiles,
    find_kustomize_command,
    glob_match,
    parse_manifests,
    render_directory,
    render_kustomize,
    render_source,
)

CM = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  released: 2024-01-01
"""


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def names(result: object) -> list[str]:
    return [m.obj["metadata"]["name"] for m in result.manifests]  # type: ignore[attr-defined]


def test_multi_document_files_lists_and_json_in_walk_order(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", CM.format(name="b1") + "---\n---\n" + CM.format(name="b2"))
    write(
        tmp_path,
        "a.yml",
        "apiVersion: v1\nkind: List\nitems:\n"
        + "".join(
            f"- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: {n}\n"
            for n in ("l1", "l2")
        ),
    )
    write(
        tmp_path,
        "c.json",
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}),
    )
    write(tmp_path, "README.md", "not a manifest")
    write(tmp_path, "sub/deep.yaml", CM.format(name="deep"))
    result = render_directory(tmp_path)
    assert names(result) == ["l1", "l2", "b1", "b2", "j"]
    assert [m.origin for m in result.manifests] == [
        "a.yml items[0]",
        "a.yml items[1]",
        "b.yaml#1",
        "b.yaml#3",
        "c.json",
    ]
    # timestamps stay text, as Kubernetes' YAML reads them
    assert result.manifests[2].obj["data"]["released"] == "2024-01-01"


def test_recurse_walks_sub_directories_depth_first_in_lexical_order(tmp_path: Path) -> None:
    for rel in ("b.yaml", "a/z.yaml", "a/b/y.yaml", "a.yaml", "c/x.yaml"):
        write(tmp_path, rel, CM.format(name=rel.replace("/", "-").removesuffix(".yaml")))
    result = render_directory(tmp_path, directory=DirectorySource(recurse=True))
    # Go's filepath.Walk visits "a" (a directory) before "a.yaml"
    assert names(result) == ["a-b-y", "a-z", "a", "b", "c-x"]


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ("", "", ["app-deploy", "app-svc", "base-cm", "test-x"]),
        ("*.yaml", "", ["app-deploy", "app-svc", "base-cm", "test-x"]),  # * crosses "/"
        ("app/*", "", ["app-deploy", "app-svc"]),
        ("{app/deploy.yaml,base/*}", "", ["app-deploy", "base-cm"]),
        ("", "test/*", ["app-deploy", "app-svc", "base-cm"]),
        ("app/*", "*svc*", ["app-deploy"]),
        ("app/[ds]*.yaml", "app/s?c.yaml", ["app-deploy"]),
        ("*", "[!a]*", ["app-deploy", "app-svc"]),
    ],
)
def test_include_and_exclude_globs_match_relative_paths_like_argo_cd(
    tmp_path: Path, include: str, exclude: str, expected: list[str]
) -> None:
    for rel in ("app/deploy.yaml", "app/svc.yaml", "base/cm.yaml", "test/x.yaml"):
        write(tmp_path, rel, CM.format(name=rel.replace("/", "-").removesuffix(".yaml")))
    result = render_directory(
        tmp_path, directory=DirectorySource(recurse=True, include=include, exclude=exclude)
    )
    assert names(result) == expected


@pytest.mark.parametrize(
    ("pattern", "text", "match"),
    [
        ("*.yaml", "a/b.yaml", True),
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
        ("{a,b{c,d}}", "bd", True),
        ("[a-c]x", "dx", False),
    ],
)
def test_glob_syntax(pattern: str, text: str, match: bool) -> None:
    assert glob_match(pattern, text) is match


@pytest.mark.parametrize("pattern", ["{a,b", "[abc", "x\\", "[b-a]"])
def test_invalid_globs_are_errors_not_silent_empty_renders(pattern: str) -> None:
    with pytest.raises(RenderError, match="invalid glob pattern"):
        glob_match(pattern, "x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: [unclosed", "bad.yaml: invalid YAML"),
        ("- a\n- b\n", "bad.yaml: expected a Kubernetes object, got a list"),
        ("just text", "bad.yaml: expected a Kubernetes object, got str"),
    ],
)
def test_unparseable_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "bad.yaml", text)
    with pytest.raises(RenderError, match=message):
        render_directory(tmp_path)


def test_jsonnet_files_are_refused_rather_than_skipped(tmp_path: Path) -> None:
    write(tmp_path, "app.jsonnet", "{}")
    with pytest.raises(RenderError, match="jsonnet is not supported yet"):
        render_directory(tmp_path)
    assert (
        render_directory(tmp_path, directory=DirectorySource(exclude="*.jsonnet")).manifests == ()
    )


def test_a_missing_path_is_an_error_not_an_empty_render(tmp_path: Path) -> None:
    src = ApplicationSource(repo_url="https://git.example/repo.git", path="apps/gone")
    with pytest.raises(RenderError, match="does not exist at revision HEAD"):
        render_source(tmp_path, src)


def test_symlinks_out_of_the_repository_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "secret.yaml", CM.format(name="x"))
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    os.symlink(outside / "secret.yaml", repo / "app" / "link.yaml")
    with pytest.raises(RenderError, match="resolves outside the repository"):
        render_source(repo, ApplicationSource(repo_url="r", path="app"))


def test_links_inside_the_repository_are_read_and_links_out_of_it_never(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    write(outside, "secret.yaml", CM.format(name="x"))
    repo = tmp_path / "repo"
    write(repo, "app/cm.yaml", CM.format(name="a"))
    write(repo, "shared/b.yaml", CM.format(name="b"))
    os.symlink(repo / "shared" / "b.yaml", repo / "app" / "b.yaml")  # inside: read
    rendered = render_source(repo, ApplicationSource(repo_url="r", path="app"))
    assert sorted(m.obj["metadata"]["name"] for m in rendered.manifests) == ["a", "b"]
    # A directory link is not walked into (as Argo CD's walk), wherever it leads.
    os.symlink(outside, repo / "app" / "more")
    source = ApplicationSource(repo_url="r", path="app", directory=DirectorySource(recurse=True))
    assert len(render_source(repo, source).manifests) == 2
    # A link named like a manifest that leads out is refused, file or directory.
    os.symlink(outside, repo / "app" / "more.yaml")
    with pytest.raises(RenderError, match=r"more\.yaml: resolves outside the repository"):
        render_source(repo, source)


def test_a_source_path_leaving_the_repository_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "outside/cm.yaml", CM.format(name="x"))
    (tmp_path / "repo").mkdir()
    with pytest.raises(RenderError, match="resolves outside the repository"):
        render_source(tmp_path / "repo", ApplicationSource(repo_url="r", path="../outside"))


def test_a_helm_source_without_a_chart_is_an_error_not_an_empty_render(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"not a Helm chart \(no Chart.yaml\)"):
        render_source(tmp_path, ApplicationSource(repo_url="r", chart="nginx", helm=HelmSource()))


KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namePrefix: prod-
namespace: payments
resources:
  - cm.yaml
"""


def test_kustomize_directories_are_built_with_the_real_tool(tmp_path: Path) -> None:
    write(tmp_path, "app/kustomization.yaml", KUSTOMIZATION)
    write(tmp_path, "app/cm.yaml", CM.format(name="settings"))
    result = render_source(tmp_path, ApplicationSource(repo_url="r", path="app"))
    assert result.tool == "kustomize"
    (m,) = result.manifests
    assert m.obj["metadata"] == {"name": "prod-settings", "namespace": "payments"}
    assert m.origin == "app (kustomize)"


def test_kustomize_failures_are_reported_with_the_tool_output(tmp_path: Path) -> None:
    write(tmp_path, "app/kustomization.yaml", KUSTOMIZATION.replace("cm.yaml", "missing.yaml"))
    with pytest.raises(
        RenderError, match=r"app: `.*kustomize.*` failed \(exit 1\): .*missing.yaml"
    ):
        render_source(tmp_path, ApplicationSource(repo_url="r", path="app"))


def test_kustomize_is_killed_after_the_timeout(tmp_path: Path) -> None:
    write(tmp_path, "app/kustomization.yaml", KUSTOMIZATION)
    slow = tmp_path / "slow-kustomize"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    with pytest.raises(RenderError, match=r"did not finish within 0\.2s"):
        render_kustomize(tmp_path / "app", timeout_s=0.2, command=[str(slow)])


def test_a_clear_error_when_no_kustomize_tool_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_kustomize_command() is None
    write(tmp_path, "app/kustomization.yaml", KUSTOMIZATION)
    with pytest.raises(RenderError, match="neither `kustomize` nor `kubectl` is on PATH"):
        render_kustomize(tmp_path / "app")


def test_kubectl_kustomize_is_used_when_kustomize_is_absent() -> None:
    if shutil.which("kustomize"):
        assert find_kustomize_command() == ["kustomize", "build"]
    else:
        assert find_kustomize_command() == ["kubectl", "kustomize"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}#\n '\"|>*&!")), max_size=60))
def test_any_text_parses_or_fails_with_our_own_error(text: str) -> None:
    try:
        out = parse_manifests(text, origin="fuzz.yaml")
    except RenderError as exc:
        assert str(exc).startswith("fuzz.yaml")
    else:
        assert all(isinstance(m.obj, dict) for m in out)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("ab/*?[]{},!\\-.")), max_size=12),
    st.text(alphabet="ab/.-", max_size=8),
)
def test_any_glob_matches_or_fails_with_our_own_error(pattern: str, text: str) -> None:
    try:
        result = glob_match(pattern, text)
    except RenderError as exc:
        assert "invalid glob pattern" in str(exc)
    else:
        assert isinstance(result, bool)


HOSTILE_MANIFESTS = [
    ("kind: ConfigMap\nmetadata: {name: !!int zz}\n", "line 2, column 18"),
    ('kind: ConfigMap\ndata: {when: !!timestamp "zz"}\n', "!!timestamp"),
    ("kind: ConfigMap\ndata:\n  ratio: !!float\n", "!!float"),
    ("".join(" " * i + "a:\n" for i in range(5000)), "deeper than 100 levels"),
    ("a: &a [*a]\n", "contains it"),
    (
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)),
        "expands to more than",
    ),
]


@pytest.mark.parametrize(("text", "reason"), HOSTILE_MANIFESTS, ids=range(len(HOSTILE_MANIFESTS)))
def test_hostile_yaml_in_git_is_a_render_error_of_that_file(text: str, reason: str) -> None:
    with pytest.raises(RenderError) as info:
        parse_manifests(text, origin="apps/web/cm.yaml")
    message = str(info.value)
    assert message.startswith("apps/web/cm.yaml: invalid YAML: ") and reason in message


def test_deeply_nested_json_in_git_is_a_render_error_of_that_file() -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RenderError, match=r"^apps/web/cm.json: invalid JSON: nesting is deeper"):
        parse_manifests(text, origin="apps/web/cm.json", is_json=True)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["!!int ", "!!float ", "!!timestamp ", "!!bool ", "!!set ", "&a ", "*a"])
        | st.sampled_from(list("ab:-[]{}#\n '\"|>*&!")),
        max_size=40,
    ).map("".join)
)
def test_any_tagged_text_parses_or_fails_with_our_own_error(text: str) -> None:
    try:
        parse_manifests(text, origin="fuzz.yaml")
    except RenderError as exc:
        assert str(exc).startswith("fuzz.yaml")


# --------------------------------------------------------------------------- parsed files


def test_parsed_files_give_equal_objects_and_never_share_them() -> None:
    files = ParsedFiles()
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n"
    first = files.parse(text, origin="cm.yaml")
    first[0].obj["data"]["k"] = "changed by one caller"
    second = files.parse(text, origin="cm.yaml")
    assert (files.hits, files.misses) == (1, 1)
    assert second == parse_manifests(text, origin="cm.yaml")
    assert second[0].obj["data"]["k"] == "v"
    third = files.parse(text, origin="cm.yaml")
    assert third[0].obj is not second[0].obj


def test_parsed_files_are_told_apart_by_origin_and_format() -> None:
    files = ParsedFiles()
    text = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}'
    assert files.parse(text, origin="a.yaml")[0].origin == "a.yaml"
    assert files.parse(text, origin="b.yaml")[0].origin == "b.yaml"
    assert files.parse(text, origin="a.yaml", is_json=True)[0].origin == "a.yaml"
    assert (files.hits, files.misses) == (0, 3)


def test_parsed_files_hold_at_most_their_bound_and_drop_the_least_recent() -> None:
    texts = [f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: n{i}}}\n" for i in range(3)]
    one = len(texts[0]) + len(
        pickle.dumps([(m.obj, m.origin) for m in parse_manifests(texts[0], origin="x")], protocol=5)
    )
    files = ParsedFiles(max_bytes=2 * one + 10)
    files.parse(texts[0], origin="x")
    files.parse(texts[1], origin="x")
    files.parse(texts[0], origin="x")  # now the most recent
    files.parse(texts[2], origin="x")  # drops texts[1]
    hits = files.hits
    files.parse(texts[0], origin="x")
    files.parse(texts[2], origin="x")
    assert files.hits == hits + 2
    files.parse(texts[1], origin="x")
    assert files.hits == hits + 2


def test_a_file_that_does_not_parse_fails_every_time() -> None:
    files = ParsedFiles()
    for _ in range(2):
        with pytest.raises(RenderError, match=r"bad\.yaml: invalid YAML"):
            files.parse("a: [unclosed\n", origin="bad.yaml")
    assert files.hits == 0


def test_one_path_rendered_for_many_apps_is_parsed_once(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    before = PARSED_FILES.hits
    outputs = [render_directory(tmp_path) for _ in range(3)]
    assert PARSED_FILES.hits >= before + 2
    assert outputs[0] == outputs[1] == outputs[2]
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    assert render_directory(tmp_path).manifests[0].obj["metadata"]["name"] == "b"
