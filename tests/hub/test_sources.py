"""Loading sources: every manifest under a path at one resolved SHA, all or nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from generators.git import RepoTree
from hub.errors import HubUsageError
from hub.repos import RepoCache, RepoError, ResolvedRevisions
from hub.sources import (
    HubGit,
    MaterializedGit,
    Source,
    SourceLoad,
    load_source,
    make_source,
    normalize_path,
)

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]

APPSET = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "ApplicationSet",
    "metadata": {"name": "web", "namespace": "argocd"},
    "spec": {
        "generators": [{"list": {"elements": [{"cluster": "east"}]}}],
        "template": {
            "metadata": {"name": "web-{{cluster}}"},
            "spec": {"project": "default", "destination": {"name": "{{cluster}}"}},
        },
    },
}
APP = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Application",
    "metadata": {"name": "tools"},
    "spec": {
        "source": {"repoURL": "https://git.example/t.git", "path": "t"},
        "destination": {"name": "east", "namespace": "tools"},
    },
}
PROJECT = {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "p"}}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}}


def git_repo(root: Path, files: dict[str, str]) -> str:
    root.mkdir()
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "c"], cwd=root, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    )
    return head.stdout.strip()


def load(tmp_path: Path, files: dict[str, str], path: str = "apps") -> SourceLoad:
    root = tmp_path / "repo"
    git_repo(root, files)
    with HubGit() as git:
        return load_source(Source(name="s", repo=str(root), path=path), git)


def test_every_kind_is_read_from_yaml_yml_and_json_multi_document_files(tmp_path: Path) -> None:
    multi = yaml.safe_dump_all([APPSET, CONFIGMAP, None, PROJECT])
    result = load(
        tmp_path,
        {
            "apps/a.yaml": multi,
            "apps/sub/b.json": json.dumps(APP),
            "apps/c.yml": "",
            "apps/notes.txt": "not: [a manifest",
            "apps/.hidden/x.yaml": "broken: [",
            "elsewhere/d.yaml": yaml.safe_dump({**APPSET, "metadata": {"name": "outside"}}),
        },
    )
    assert result.ok and result.errors == ()
    assert [a.name for a in result.appsets] == ["web"]
    assert [(a.name, a.file) for a in result.applications] == [("tools", "apps/sub/b.json")]
    assert [p.name for p in result.projects] == ["p"]
    assert result.files == 3
    assert result.appsets[0].manifest["metadata"]["name"] == "web"
    assert result.appsets[0].appset.source == "apps/a.yaml#0"


def test_the_whole_repository_is_read_when_the_path_is_empty(tmp_path: Path) -> None:
    result = load(tmp_path, {"x/a.yaml": yaml.safe_dump(APPSET)}, path="")
    assert [a.name for a in result.appsets] == ["web"]


def test_all_documents_are_read_at_the_one_resolved_sha(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    sha = git_repo(root, {"apps/a.yaml": yaml.safe_dump(APPSET)})
    (root / "apps/a.yaml").write_text("uncommitted: [")  # the working tree is never read
    with HubGit() as git:
        result = load_source(Source(name="s", repo=str(root), path="apps"), git)
    assert result.ok and result.sha == sha


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"apps/a.yaml": "a: [unclosed"}, "apps/a.yaml@"),
        ({"apps/a.yaml": "---\n- 1\n"}, "document 0: must be a mapping"),
        (
            {"apps/a.yaml": yaml.safe_dump_all([PROJECT, {**APP, "spec": {"source": 3}}])},
            "apps/a.yaml@",
        ),
        (
            {"apps/a.yaml": yaml.safe_dump({**APPSET, "apiVersion": "argoproj.io/v1"})},
            "must have apiVersion argoproj.io/v1alpha1",
        ),
        (
            {"apps/a.yaml": yaml.safe_dump({**APPSET, "spec": {"generators": []}})},
            "apps/a.yaml#0",
        ),
        (
            {"apps/a.yaml": yaml.safe_dump(APPSET), "apps/b.yaml": yaml.safe_dump(APPSET)},
            "apps/b.yaml: ApplicationSet 'web' is also declared in apps/a.yaml",
        ),
        ({"apps/p.yaml": yaml.safe_dump({**PROJECT, "metadata": {}})}, "metadata.name"),
        (
            {
                "apps/p.yaml": yaml.safe_dump(
                    {
                        **PROJECT,
                        "metadata": {"name": "team"},
                        "spec": {"destinations": [{"namespace": "a"}]},
                    }
                )
            },
            "apps/p.yaml@",
        ),
        (
            {
                "apps/p.yaml": yaml.safe_dump(
                    {**PROJECT, "metadata": {"name": "team"}, "spec": {"sourceRepos": "x"}}
                )
            },
            "spec.sourceRepos must be a list of strings",
        ),
    ],
)
def test_a_bad_file_is_an_error_naming_file_and_document(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    result = load(tmp_path, {"apps/ok.yaml": yaml.safe_dump(PROJECT), **files})
    assert not result.ok
    assert any(message in e for e in result.errors), result.errors


def test_a_document_index_is_named_in_multi_document_files(tmp_path: Path) -> None:
    bad = yaml.safe_dump_all([PROJECT, {**APP, "spec": {"source": 3}}])
    result = load(tmp_path, {"apps/a.yaml": bad})
    assert "apps/a.yaml@" in result.errors[0] and "document 1" in result.errors[0]


@pytest.mark.parametrize(
    ("repo", "revision", "path", "message"),
    [
        ("missing", "HEAD", "apps", "does not exist"),
        ("repo", "nope", "apps", "revision 'nope' not found"),
        ("repo", "HEAD", "nope", "no directory 'nope'"),
    ],
)
def test_unreadable_sources_are_errors(
    tmp_path: Path, repo: str, revision: str, path: str, message: str
) -> None:
    git_repo(tmp_path / "repo", {"apps/a.yaml": yaml.safe_dump(APPSET)})
    source = Source(name="s", repo=str(tmp_path / repo), path=path, revision=revision)
    with HubGit() as git:
        result = load_source(source, git)
    assert not result.ok and message in result.errors[0]
    assert result.appsets == ()


def test_urls_need_the_repo_cache(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    sha = git_repo(root, {"apps/a.yaml": yaml.safe_dump(APPSET)})
    source = Source(name="s", repo=f"file://{root}", path="apps", revision="main")
    with HubGit() as git:
        assert "repo cache" in load_source(source, git).errors[0]
    with RepoCache(tmp_path / "home") as cache, HubGit(remote=MaterializedGit(cache)) as git:
        result = load_source(source, git)
        assert result.ok and result.sha == sha and [a.name for a in result.appsets] == ["web"]
        remote = MaterializedGit(cache)
        assert "apps/a.yaml" in remote.list_tree(source.repo, sha).files
        with pytest.raises(RepoError, match="no file"):
            remote.read_file(source.repo, sha, "../../etc/passwd")


@pytest.mark.parametrize(
    ("path", "expected"),
    [("", ""), (".", ""), ("apps/", "apps"), ("./a//b", "a/b"), ("a/./b", "a/b")],
)
def test_paths_inside_the_repository_are_normalised(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


@pytest.mark.parametrize("path", ["/etc", "../x", "a/../../b"])
def test_paths_leaving_the_repository_are_refused(path: str) -> None:
    with pytest.raises(HubUsageError, match="inside the repository"):
        normalize_path(path)


def test_make_source_validates_names_and_makes_local_paths_absolute(tmp_path: Path) -> None:
    src = make_source("apps", str(tmp_path / "r" / ".." / "r"), "x", "")
    assert src.repo == str((tmp_path / "r").resolve()) and src.revision == "HEAD"
    assert make_source("apps", "https://git.example/r.git", "").repo == "https://git.example/r.git"
    for bad in ("Apps", "a_b", "", "-a", "a" * 64):
        with pytest.raises(HubUsageError, match="source name"):
            make_source(bad, "/r", "")


class MemoryGit:
    """Files of one commit in memory: property tests need thousands of sources."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        # As in Git, the commit names the content: one SHA, one set of files.
        digest = hashlib.sha1()
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path] + b"\0")
        self.sha = digest.hexdigest()

    def resolve(self, repo_url: str, revision: str) -> str:
        return self.sha

    def list_tree(self, repo_url: str, revision: str) -> RepoTree:
        dirs = {p.rsplit("/", 1)[0] for p in self.files if "/" in p}
        return RepoTree(files=tuple(sorted(self.files)), directories=tuple(sorted(dirs)))

    def read_file(self, repo_url: str, revision: str, path: str) -> bytes:
        return self.files[path]


_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_docs = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_kinds = st.sampled_from(["ApplicationSet", "Application", "AppProject", "ConfigMap"])


@settings(max_examples=150, deadline=None)
@given(
    raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    doc=st.fixed_dictionaries(
        {"apiVersion": st.just("argoproj.io/v1alpha1"), "kind": _kinds},
        optional={"metadata": _docs, "spec": _docs},
    ),
)
def test_any_file_content_gives_a_result_or_errors_never_a_crash(
    raw: bytes, doc: dict[str, object]
) -> None:
    files = {"apps/raw.yaml": raw, "apps/doc.json": json.dumps(doc).encode()}
    git = MemoryGit(files)
    result = load_source(Source(name="s", repo="mem", path="apps"), git)
    assert result.sha == git.sha
    assert result.ok or all(e.startswith("apps/") for e in result.errors)
    if result.ok:
        assert len(result.appsets) + len(result.applications) + len(result.projects) <= 2


class CountingProvider:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.resolves = 0

    def resolve(self, repo_url: str, revision: str) -> str:
        self.resolves += 1
        return "a" * 40

    def materialize(self, repo_url: str, sha: str) -> Path:
        return self.root


def test_remote_revisions_are_resolved_once_per_cycle(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.yaml").write_text("a: 1")
    provider = CountingProvider(tmp_path)
    revisions = ResolvedRevisions(provider)
    git = HubGit(remote=MaterializedGit(revisions))
    for _ in range(3):
        assert git.read_file("https://g/r.git", "HEAD", "d/f.yaml") == b"a: 1"
    assert git.list_tree("https://g/r.git", "HEAD").files == ("d/f.yaml",)
    assert provider.resolves == 1
    revisions.new_cycle()
    git.resolve("https://g/r.git", "HEAD")
    assert provider.resolves == 2
    git.read_file("https://g/r.git", "a" * 40, "d/f.yaml")  # a SHA needs no resolution
    assert provider.resolves == 2


class CountingGit(HubGit):
    """A HubGit that counts the files it reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def read_file(self, repo_url: str, revision: str, path: str) -> bytes:
        self.reads += 1
        return super().read_file(repo_url, revision, path)


def test_a_source_at_the_same_sha_is_not_read_again_and_a_new_commit_is(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    git_repo(root, {"apps/a.yaml": yaml.safe_dump(APPSET)})
    source = Source(name="s", repo=str(root), path="apps")
    with CountingGit() as git:
        first = load_source(source, git)
        again = load_source(source, git)
        assert git.reads == 1 and again == first and first.ok
        moved = {**APPSET, "metadata": {"name": "moved"}}
        (root / "apps/a.yaml").write_text(yaml.safe_dump(moved))
        subprocess.run([*GIT, "commit", "-qam", "d"], cwd=root, check=True)
        later = load_source(source, git)
        assert git.reads == 2 and [a.name for a in later.appsets] == ["moved"]
        # Another path of the same repository at the same SHA is another load.
        other = load_source(Source(name="s", repo=str(root), path=""), git)
        assert git.reads == 3 and [a.name for a in other.appsets] == ["moved"]


def test_a_load_with_errors_is_read_again_every_time(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    git_repo(root, {"apps/a.yaml": "a: [unclosed"})
    source = Source(name="s", repo=str(root), path="apps")
    with CountingGit() as git:
        assert not load_source(source, git).ok
        assert not load_source(source, git).ok
        assert git.reads == 2
