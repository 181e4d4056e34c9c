"""``hub appset generate``: Applications and params of an ApplicationSet, offline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from hub.cli import main

REPO_URL = "https://git.example.com/org/apps.git"

SECRETS = """\
apiVersion: v1
kind: Secret
metadata:
  name: prod-secret
  namespace: argocd
  labels: {argocd.argoproj.io/secret-type: cluster, env: prod}
  annotations: {team: platform}
stringData:
  name: prod
  server: https://prod.example.com:6443
  project: team-a
  config: '{"bearerToken": "not-a-real-token-123"}'
---
apiVersion: v1
kind: Secret
metadata:
  name: dev-secret
  namespace: argocd
  labels: {argocd.argoproj.io/secret-type: cluster, env: dev}
stringData:
  name: dev
  server: https://dev.example.com:6443
  config: '{"bearerToken": "not-a-real-token-456"}'
"""


def appset_yaml(generators: list[Any], template: dict[str, Any] | None = None, **spec: Any) -> str:
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "guestbook", "namespace": "argocd"},
        "spec": {
            "generators": generators,
            "template": template
            or {
                "metadata": {"name": "{{name}}-{{path.basename}}"},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": REPO_URL, "path": "{{path}}", "targetRevision": "HEAD"},
                    "destination": {"server": "{{server}}", "namespace": "{{path.basename}}"},
                },
            },
            **spec,
        },
    }
    return yaml.safe_dump(doc)


MATRIX = [
    {
        "matrix": {
            "generators": [
                {"clusters": {}},
                {
                    "git": {
                        "repoURL": REPO_URL,
                        "revision": "HEAD",
                        "directories": [{"path": "apps/*"}],
                    }
                },
            ]
        }
    }
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "apps-repo"
    for app in ("guestbook", "billing"):
        (root / "apps" / app).mkdir(parents=True)
        (root / "apps" / app / "kustomization.yaml").write_text("resources: []\n")
    git = ["git", "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "apps"], cwd=root, check=True)
    return root


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    secrets = tmp_path / "clusters.yaml"
    secrets.write_text(SECRETS)
    return {"secrets": secrets}


def hub(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["--home", str(tmp_path / "home"), *args],
        env={"HUB_MASTER_KEY": None, "HUB_HOME": None},
        catch_exceptions=False,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "appset.yaml"
    path.write_text(text)
    return path


def test_yaml_output_is_one_application_document_per_app_in_order(
    tmp_path: Path, repo: Path, files: dict[str, Path]
) -> None:
    aset = write(tmp_path, appset_yaml(MATRIX))
    run = hub(
        tmp_path,
        "appset",
        "generate",
        str(aset),
        "--repo",
        f"{REPO_URL}={repo}",
        "--clusters",
        str(files["secrets"]),
    )
    assert run.exit_code == 0, run.output
    apps = list(yaml.safe_load_all(run.stdout))
    assert [a["metadata"]["name"] for a in apps] == [
        "dev-billing",
        "dev-guestbook",
        "prod-billing",
        "prod-guestbook",
    ]
    assert apps[0]["spec"]["destination"] == {
        "server": "https://dev.example.com:6443",
        "namespace": "billing",
    }
    assert "not-a-real-token" not in run.output


def test_json_output_is_an_array_and_the_order_is_deterministic(
    tmp_path: Path, repo: Path, files: dict[str, Path]
) -> None:
    aset = write(tmp_path, appset_yaml(MATRIX))
    args = [
        "appset",
        "generate",
        str(aset),
        "--repo",
        str(repo),
        "--clusters",
        str(files["secrets"]),
        "-o",
        "json",
    ]
    first, second = hub(tmp_path, *args), hub(tmp_path, *args)
    assert first.exit_code == 0, first.output
    apps = json.loads(first.stdout)
    assert isinstance(apps, list) and len(apps) == 4
    assert first.stdout == second.stdout


def test_table_output_lists_name_project_destination_and_source(
    tmp_path: Path, repo: Path, files: dict[str, Path]
) -> None:
    aset = write(tmp_path, appset_yaml(MATRIX))
    run = hub(
        tmp_path,
        "appset",
        "generate",
        str(aset),
        "--repo",
        str(repo),
        "--clusters",
        str(files["secrets"]),
        "-o",
        "table",
    )
    assert run.exit_code == 0, run.output
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PROJECT", "DESTINATION", "SOURCE"]
    assert lines[1].split()[:3] == [
        "dev-billing",
        "default",
        "https://dev.example.com:6443/billing",
    ]


def test_params_are_flat_in_fast_mode(tmp_path: Path, repo: Path, files: dict[str, Path]) -> None:
    aset = write(tmp_path, appset_yaml(MATRIX))
    run = hub(
        tmp_path,
        "appset",
        "generate",
        str(aset),
        "--repo",
        str(repo),
        "--clusters",
        str(files["secrets"]),
        "--params",
        "-o",
        "json",
    )
    assert run.exit_code == 0, run.output
    params = json.loads(run.stdout)
    assert len(params) == 4
    assert params[2]["name"] == "prod"
    assert params[2]["path.basename"] == "billing"
    assert params[2]["metadata.labels.env"] == "prod"
    assert params[2]["metadata.annotations.team"] == "platform"


def test_params_are_nested_in_go_mode_and_shown_even_when_the_template_is_broken(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    template = {"metadata": {"name": "{{ .name }}-{{ .nope }}"}, "spec": {"project": "default"}}
    gens = [{"list": {"elements": [{"name": "a", "replicas": 3, "cfg": {"x": True}}]}}]
    aset = write(
        tmp_path,
        appset_yaml(gens, template, goTemplate=True, goTemplateOptions=["missingkey=error"]),
    )
    run = hub(tmp_path, "appset", "generate", str(aset), "--params", "-o", "json")
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout) == [{"name": "a", "replicas": 3, "cfg": {"x": True}}]
    assert 'no entry for key "nope"' in run.stderr
    # Without --params the same set cannot be generated: exit 1, the error, no list.
    broken = hub(tmp_path, "appset", "generate", str(aset), "-o", "json")
    assert broken.exit_code == 1
    assert broken.stdout == ""
    assert "spec.template.metadata.name" in broken.stderr


def test_a_generator_error_exits_1_with_the_error_and_no_output(tmp_path: Path) -> None:
    aset = write(tmp_path, appset_yaml([{"list": {"elements": [{"name": 3}]}}]))
    run = hub(tmp_path, "appset", "generate", str(aset), "-o", "json")
    assert run.exit_code == 1
    assert run.stdout == ""
    assert "spec.generators[0].list.elements[0].name" in run.stderr


def test_a_missing_repository_mapping_is_an_error_not_an_empty_list(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    aset = write(tmp_path, appset_yaml(MATRIX))
    run = hub(
        tmp_path, "appset", "generate", str(aset), "--clusters", str(files["secrets"]), "-o", "json"
    )
    assert run.exit_code == 1 and run.stdout == ""
    assert "--repo" in run.stderr


def test_an_invalid_file_is_a_usage_error(tmp_path: Path) -> None:
    aset = write(
        tmp_path,
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {name: x}\nspec: {}\n",
    )
    run = hub(tmp_path, "appset", "generate", str(aset))
    assert run.exit_code == 2
    assert "spec.generators" in run.stderr
    assert hub(tmp_path, "appset", "generate", str(tmp_path / "nope.yaml")).exit_code == 2


def test_duplicates_exit_1_but_the_other_apps_are_printed(tmp_path: Path) -> None:
    gens = [{"list": {"elements": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}}]
    aset = write(
        tmp_path, appset_yaml(gens, {"metadata": {"name": "{{name}}"}, "spec": {"project": "p"}})
    )
    run = hub(tmp_path, "appset", "generate", str(aset), "-o", "json")
    assert run.exit_code == 1
    assert [a["metadata"]["name"] for a in json.loads(run.stdout)] == ["a", "b"]
    assert "duplicate application name 'a'" in run.stderr


def test_in_cluster_adds_the_local_cluster(tmp_path: Path) -> None:
    template = {"metadata": {"name": "{{name}}"}, "spec": {"destination": {"server": "{{server}}"}}}
    aset = write(tmp_path, appset_yaml([{"clusters": {}}], template))
    without = hub(tmp_path, "appset", "generate", str(aset), "-o", "json")
    assert without.exit_code == 0 and json.loads(without.stdout) == []
    run = hub(tmp_path, "appset", "generate", str(aset), "--in-cluster", "-o", "json")
    [app] = json.loads(run.stdout)
    assert app["metadata"]["name"] == "in-cluster"
    assert app["spec"]["destination"]["server"] == "https://kubernetes.default.svc"


def test_registered_clusters_of_the_hub_home_are_used_without_clusters_file(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    assert hub(tmp_path, "init").exit_code == 0
    imported = hub(tmp_path, "cluster", "import", "-f", str(files["secrets"]), "--skip-check")
    assert imported.exit_code == 0, imported.output
    template = {
        "metadata": {"name": "{{name}}-{{metadata.labels.env}}"},
        "spec": {"project": "{{project}}"},
    }
    aset = write(tmp_path, appset_yaml([{"clusters": {}}], template))
    run = hub(tmp_path, "appset", "generate", str(aset), "-o", "json")
    assert run.exit_code == 0, run.output
    apps = json.loads(run.stdout)
    assert [(a["metadata"]["name"], a["spec"]["project"]) for a in apps] == [
        ("dev-dev", ""),
        ("prod-prod", "team-a"),
    ]


def test_new_git_file_globbing_switches_to_doublestar(tmp_path: Path) -> None:
    root = tmp_path / "cfg"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "x.json").write_text('{"n": "top"}')
    (root / "a" / "b" / "y.json").write_text('{"n": "deep"}')
    git = ["git", "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=root, check=True)
    gens = [{"git": {"repoURL": REPO_URL, "revision": "HEAD", "files": [{"path": "a/*.json"}]}}]
    aset = write(tmp_path, appset_yaml(gens))
    base = ["appset", "generate", str(aset), "--repo", str(root), "--params", "-o", "json"]
    assert [p["n"] for p in json.loads(hub(tmp_path, *base).stdout)] == ["deep", "top"]
    assert [p["n"] for p in json.loads(hub(tmp_path, *base, "--new-git-file-globbing").stdout)] == [
        "top"
    ]
