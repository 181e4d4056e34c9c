"""Pure Helm logic: parsing ``source.helm``, value-file resolution, ``helm template`` flags,
Argo's env substitution and ``--set`` escaping, semver constraints, source selection."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.semver import Constraint, Version, VersionError, best_match
from hub.sync.helm import (
    ClusterInfo,
    RenderContext,
    api_versions_of,
    argo_envsubst,
    escape_set_value,
    find_helm,
    semver_of,
    template_args,
    value_file_paths,
)
from hub.sync.model import (
    AppSpecError,
    HelmParameter,
    HelmSource,
    RenderError,
    parse_application,
)


def app_doc(spec: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {"destination": {"namespace": "prod"}, **spec},
    }


def test_the_helm_block_is_parsed_into_its_fields() -> None:
    app = parse_application(
        app_doc(
            {
                "source": {
                    "repoURL": "r",
                    "path": "chart",
                    "helm": {
                        "valueFiles": ["a.yaml", "$values/b.yaml"],
                        "values": "x: 1\n",
                        "valuesObject": {"y": 2},
                        "parameters": [
                            {"name": "image.tag", "value": "1.2"},
                            {"name": "port", "value": "80", "forceString": True},
                        ],
                        "fileParameters": [{"name": "cfg", "path": "files/cfg.txt"}],
                        "releaseName": "rel",
                        "namespace": "other",
                        "skipCrds": True,
                        "ignoreMissingValueFiles": True,
                        "passCredentials": True,
                        "kubeVersion": "1.29.0",
                        "apiVersions": ["monitoring.coreos.com/v1"],
                    },
                }
            }
        ),
        source_file="app.yaml",
    )
    helm = app.primary_source().helm
    assert helm is not None
    assert helm.value_files == ("a.yaml", "$values/b.yaml")
    assert helm.values_yaml == "y: 2\n"  # valuesObject wins over values, as in Argo
    assert [(p.name, p.force_string) for p in helm.parameters] == [
        ("image.tag", False),
        ("port", True),
    ]
    assert helm.file_parameters[0].path == "files/cfg.txt"
    assert (helm.release_name, helm.namespace, helm.skip_crds) == ("rel", "other", True)
    assert helm.kube_version == "1.29.0" and helm.api_versions == ("monitoring.coreos.com/v1",)


@pytest.mark.parametrize(
    ("helm", "message"),
    [
        ({"parameters": {"a": 1}}, r"spec.source.helm.parameters: expected a list"),
        ({"parameters": [{"value": "1"}]}, r"parameters\[0\].name: is required"),
        ({"skipCrds": "yes"}, r"helm.skipCrds: expected true or false"),
        ({"valueFiles": "a.yaml"}, r"helm.valueFiles: expected a list of strings"),
        ({"fileParameters": [{"name": "x"}]}, r"fileParameters\[0\]: name and path"),
    ],
)
def test_a_bad_helm_block_names_the_field(helm: dict[str, object], message: str) -> None:
    with pytest.raises(AppSpecError, match=message):
        parse_application(app_doc({"source": {"repoURL": "r", "path": "c", "helm": helm}}))


def test_sources_with_duplicate_or_only_refs_are_refused() -> None:
    dup = parse_application(
        app_doc(
            {
                "sources": [
                    {"repoURL": "a", "path": "x", "ref": "v"},
                    {"repoURL": "b", "ref": "v"},
                ]
            }
        )
    )
    with pytest.raises(AppSpecError, match="ref 'v' is used twice"):
        dup.app_sources()
    only = parse_application(app_doc({"sources": [{"repoURL": "b", "ref": "v"}]}))
    with pytest.raises(AppSpecError, match="every source is a ref-only source"):
        only.app_sources()
    with pytest.raises(AppSpecError, match="ref: 'a b': use letters"):
        parse_application(app_doc({"sources": [{"repoURL": "b", "path": "p", "ref": "a b"}]}))


def test_spec_sources_wins_over_spec_source_as_in_argo() -> None:
    app = parse_application(
        app_doc(
            {
                "source": {"repoURL": "single", "path": "p"},
                "sources": [{"repoURL": "multi", "path": "p"}],
            }
        )
    )
    assert [s.repo_url for s in app.app_sources()] == ["multi"]


# ---------------------------------------------------------------- value files


def _tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = tmp_path / "repo"
    chart = repo / "charts" / "web"
    (chart / "envs").mkdir(parents=True)
    (chart / "values-prod.yaml").write_text("a: 1\n")
    (chart / "envs" / "web.yaml").write_text("a: 2\n")
    (repo / "shared.yaml").write_text("a: 3\n")
    other = tmp_path / "values-repo"
    (other / "teams").mkdir(parents=True)
    (other / "teams" / "web.yaml").write_text("a: 4\n")
    return repo, chart, other


def test_value_files_resolve_as_argo_resolves_them(tmp_path: Path) -> None:
    repo, chart, other = _tree(tmp_path)
    helm = HelmSource(
        value_files=(
            "values-prod.yaml",  # relative to the chart
            "/shared.yaml",  # absolute: relative to the repository root
            "envs/$ARGOCD_APP_NAME.yaml",  # Argo's env substitution
            "$values/teams/$ARGOCD_APP_NAME.yaml",  # another source's checkout
        )
    )
    got = value_file_paths(
        helm,
        app_path=chart,
        repo_root=repo,
        refs={"values": other},
        env={"ARGOCD_APP_NAME": "web"},
    )
    assert got == [
        chart / "values-prod.yaml",
        repo / "shared.yaml",
        chart / "envs" / "web.yaml",
        other / "teams" / "web.yaml",
    ]


@pytest.mark.parametrize(
    ("value_file", "message"),
    [
        ("../../../etc/passwd", "resolves outside the repository"),
        ("/../outside.yaml", "resolves outside the repository"),
        ("$values/../../x.yaml", "resolves outside the repository"),
        ("$nosuch/x.yaml", "no source has `ref: nosuch`"),
        ("https://example.com/v.yaml", "remote value files are not supported"),
        ("missing.yaml", r"file not found \(set helm.ignoreMissingValueFiles"),
    ],
)
def test_bad_value_files_are_refused_with_the_reason(
    tmp_path: Path, value_file: str, message: str
) -> None:
    repo, chart, other = _tree(tmp_path)
    with pytest.raises(RenderError, match=message):
        value_file_paths(
            HelmSource(value_files=(value_file,)),
            app_path=chart,
            repo_root=repo,
            refs={"values": other},
            env={},
        )


def test_missing_value_files_are_skipped_when_asked(tmp_path: Path) -> None:
    repo, chart, _other = _tree(tmp_path)
    helm = HelmSource(
        value_files=("missing.yaml", "values-prod.yaml"), ignore_missing_value_files=True
    )
    got = value_file_paths(helm, app_path=chart, repo_root=repo, refs={}, env={})
    assert got == [chart / "values-prod.yaml"]


# ---------------------------------------------------------------- flags


def _param(name: str, value: str, *, force_string: bool = False) -> HelmParameter:
    return HelmParameter(name=name, value=value, force_string=force_string)


CLUSTER = ClusterInfo(kube_version="1.32.0", api_versions=("apps/v1", "apps/v1/Deployment"))


def test_template_flags_follow_argo_cd(tmp_path: Path) -> None:
    helm = HelmSource(
        parameters=(
            _param("image.tag", "$ARGOCD_APP_NAME-1"),
            _param("hosts", "a,b", force_string=True),
            _param("list", "{a,b}"),
        ),
    )
    args = template_args(
        tmp_path / "chart",
        helm=helm,
        ctx=RenderContext(app_name="web", destination_namespace="prod", cluster=CLUSTER),
        value_files=[tmp_path / "v1.yaml", tmp_path / "v2.yaml"],
        inline_values=tmp_path / "inline.yaml",
        file_parameters=[("cfg", tmp_path / "cfg.txt")],
        env={"ARGOCD_APP_NAME": "web"},
    )
    assert args == [
        "template",
        str(tmp_path / "chart"),
        "--name-template",
        "web",
        "--namespace",
        "prod",
        "--kube-version",
        "1.32.0",
        "--set",
        "image.tag=web-1",
        "--set",
        "list={a,b}",
        "--set-string",
        "hosts=a\\,b",
        "--set-file",
        f"cfg={tmp_path / 'cfg.txt'}",
        "--values",
        str(tmp_path / "v1.yaml"),
        "--values",
        str(tmp_path / "v2.yaml"),
        "--values",
        str(tmp_path / "inline.yaml"),  # inline values after the files: they win
        "--api-versions",
        "apps/v1",
        "--api-versions",
        "apps/v1/Deployment",
        "--include-crds",
    ]


def test_helm_fields_override_the_cluster_and_the_app(tmp_path: Path) -> None:
    helm = HelmSource(
        release_name="rel",
        namespace="elsewhere",
        kube_version="1.27.0",
        api_versions=("example.com/v1",),
        skip_crds=True,
        skip_schema_validation=True,
        skip_tests=True,
    )
    args = template_args(
        tmp_path,
        helm=helm,
        ctx=RenderContext(app_name="web", destination_namespace="prod", cluster=CLUSTER),
    )
    text = " ".join(args)
    assert "--name-template rel" in text and "--namespace elsewhere" in text
    assert "--kube-version 1.27.0" in text
    assert args.count("--api-versions") == 1 and "example.com/v1" in args
    assert "--include-crds" not in args
    assert args[-2:] == ["--skip-schema-validation", "--skip-tests"]


def test_no_helm_block_still_names_the_release_after_the_app(tmp_path: Path) -> None:
    args = template_args(tmp_path, helm=None, ctx=RenderContext(app_name="web"))
    assert args == ["template", str(tmp_path), "--name-template", "web", "--include-crds"]


def test_a_later_parameter_of_the_same_name_wins(tmp_path: Path) -> None:
    helm = HelmSource(
        parameters=(
            _param("a", "1"),
            _param("a", "2", force_string=True),
        )
    )
    args = template_args(tmp_path, helm=helm, ctx=RenderContext(app_name="w"))
    assert "--set" not in args and args[args.index("--set-string") + 1] == "a=2"


def test_discovery_becomes_api_versions_and_git_version_a_kube_version() -> None:
    assert api_versions_of([("", "v1", "Pod"), ("apps", "v1", "Deployment")]) == (
        "apps/v1",
        "apps/v1/Deployment",
        "v1",
        "v1/Pod",
    )
    assert semver_of("v1.30.2+k3s1") == "1.30.2"
    assert semver_of("v1.29") == "1.29.0"
    assert semver_of("garbage") == ""


# ---------------------------------------------------------------- env and escaping


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("$ARGOCD_APP_NAME", "web"),
        ("${ARGOCD_APP_NAME}-x", "web-x"),
        ("$UNKNOWN/x", "/x"),
        ("$$", "$"),
        ("a$", "a$"),
        ("$ x", "$ x"),
        ("${}", ""),
        ("${unterminated", "unterminated"),
        ("cost: 5$", "cost: 5$"),
    ],
)
def test_envsubst_matches_go_os_expand(text: str, want: str) -> None:
    assert argo_envsubst(text, {"ARGOCD_APP_NAME": "web"}) == want


@given(st.text())
def test_envsubst_leaves_text_without_dollars_alone(text: str) -> None:
    clean = text.replace("$", "")
    assert argo_envsubst(clean, {"A": "b"}) == clean


@given(st.text())
def test_set_escaping_never_leaves_a_bare_comma(text: str) -> None:
    out = escape_set_value(text)
    if not (text.startswith("{") and text.endswith("}")):
        assert not re.search(r"(^|[^\\]),", out)
        assert out.replace("\\,", ",") == text.replace("\\,", ",")


# ---------------------------------------------------------------- semver


@pytest.mark.parametrize(
    ("constraint", "want"),
    [
        ("1.2.3", "1.2.3"),
        ("^1.2", "1.3.0"),
        ("~1.2.0", "1.2.3"),
        (">=1.0 <2.0", "1.3.0"),
        (">=1.0, <1.3", "1.2.3"),
        ("1.2.x", "1.2.3"),
        ("1.x", "1.3.0"),
        ("*", "2.0.0"),
        ("1.2 - 1.3", "1.3.0"),
        ("<1.0.0 || >=2", "2.0.0"),
        ("^0.1", "0.1.0"),
        (">=1.3.0-0 <1.3.0", "1.3.0-rc.1"),  # a pre-release only when the range names one
        ("^3", None),
    ],
)
def test_chart_version_constraints_as_helm_reads_them(constraint: str, want: str | None) -> None:
    versions = ["0.1.0", "0.2.0", "1.0.0", "1.2.3", "1.3.0-rc.1", "1.3.0", "2.0.0"]
    assert best_match(constraint, versions) == want


def test_a_bad_constraint_is_a_clear_error() -> None:
    with pytest.raises(VersionError, match="not a version"):
        Constraint.parse(">=banana")


@given(st.lists(st.from_regex(r"\A[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\Z"), min_size=1))
def test_star_picks_the_highest_release(versions: list[str]) -> None:
    got = best_match("*", versions)
    assert got is not None
    parsed = Version.parse(got)
    assert parsed is not None and all(parsed >= Version.parse(v) for v in versions)  # type: ignore[operator]


@given(st.text(max_size=30))
def test_the_constraint_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(VersionError):
        Constraint.parse(text)


# ---------------------------------------------------------------- the binary


def test_a_missing_helm_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("HUB_HELM", raising=False)
    with pytest.raises(RenderError, match="run `make helm`"):
        find_helm()
    fake = tmp_path / "my-helm"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("HUB_HELM", str(fake))
    assert find_helm() == str(fake)
    monkeypatch.setenv("HUB_HELM", str(tmp_path / "nope"))
    with pytest.raises(RenderError, match=r"HUB_HELM=.*not an executable"):
        find_helm()
    assert os.environ["HOME"] == str(tmp_path)


def test_a_revision_override_names_one_revision_per_source() -> None:
    from hub.sync.sources import split_revision

    app = parse_application(
        app_doc(
            {
                "sources": [
                    {"repoURL": "a", "path": "p"},
                    {"repoURL": "b", "ref": "values"},
                ]
            }
        )
    )
    assert split_revision(app, None) == [None, None]
    assert split_revision(app, "main,v2") == ["main", "v2"]
    assert split_revision(app, ",v2") == [None, "v2"]
    with pytest.raises(AppSpecError, match="give one per source, joined with ','"):
        split_revision(app, "main")


def test_a_kustomization_wins_over_chart_yaml_as_in_argo_discovery(tmp_path: Path) -> None:
    from hub.sync.model import ApplicationSource
    from hub.sync.render import find_kustomize_command, render_source

    if find_kustomize_command() is None:
        pytest.skip("neither kustomize nor kubectl is installed")
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: x\nversion: 0.1.0\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    result = render_source(tmp_path, ApplicationSource(repo_url="r"))
    assert result.tool == "kustomize"
