"""Helm charts rendered with ``helm template``, as Argo CD's repo-server renders them.

The pure part decides everything (``value_file_paths``, ``template_args``, ``argo_envsubst``)
so it can be unit tested; ``render_chart`` only writes the inline values to a temporary
file and runs the binary. The flags follow Argo CD (``util/helm/cmd.go`` and
``reposerver/repository``):

- ``--name-template`` the release name (``helm.releaseName``, default the Application name);
- ``--namespace`` ``helm.namespace``, else the destination namespace;
- ``--kube-version`` / ``--api-versions`` ``helm.kubeVersion`` / ``helm.apiVersions`` when
  set, else what the target cluster's discovery says;
- ``--set`` / ``--set-string`` (``forceString``) per parameter, commas escaped as Argo does,
  ``--set-file`` per file parameter;
- ``--values`` per value file (relative to the chart path, ``/abs`` relative to the
  repository root, ``$ref/path`` in the checkout of the source with that ``ref``), then one
  for ``values``/``valuesObject``, so inline values win over files;
- ``--include-crds`` unless ``skipCrds``; ``--skip-schema-validation``, ``--skip-tests``.

The binary is ``HUB_HELM``, else the one ``make helm`` caches
(``~/.cache/gitops-hub/bin/helm-VERSION``), else ``helm`` on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.inline import check_blocking
from hub.sync.model import ApplicationSource, HelmSource, RenderError

HELM_VERSION = "v3.17.2"  # the Makefile's HELM_VERSION
HELM_ENV = "HUB_HELM"
DEFAULT_HELM_TIMEOUT_S = 90.0
CHART_FILE = "Chart.yaml"


def cached_helm_path() -> Path:
    """Where ``make helm`` puts the binary."""
    return Path.home() / ".cache" / "gitops-hub" / "bin" / f"helm-{HELM_VERSION}"


def find_helm() -> str:
    """The ``helm`` binary to run, or a ``RenderError`` saying how to install one."""
    configured = os.environ.get(HELM_ENV, "").strip()
    if configured:
        if not os.access(configured, os.X_OK):
            raise RenderError(f"{HELM_ENV}={configured}: not an executable file")
        return configured
    cached = cached_helm_path()
    if os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which("helm")
    if found:
        return found
    raise RenderError(
        "rendering a Helm chart needs the `helm` binary: run `make helm` (installs "
        f"{HELM_VERSION} into {cached.parent}), or put helm on PATH, or set {HELM_ENV}"
    )


@dataclass(frozen=True, kw_only=True)
class ClusterInfo:
    """What the target cluster tells ``helm template`` (``.Capabilities``)."""

    kube_version: str = ""  # "1.30.0"; empty: helm's default
    api_versions: tuple[str, ...] = ()  # "apps/v1", "apps/v1/Deployment", ...


@dataclass(frozen=True, kw_only=True)
class RenderContext:
    """Per-Application inputs of a Helm render besides the source itself."""

    app_name: str
    destination_namespace: str = ""
    cluster: ClusterInfo = ClusterInfo()
    revision: str = ""  # for $ARGOCD_APP_REVISION
    # ``ref`` name -> checkout of that source, for ``$ref/path`` value files
    refs: Mapping[str, Path] | None = None


# --------------------------------------------------------------------------- pure logic


def build_env(source: ApplicationSource, ctx: RenderContext) -> dict[str, str]:
    """Argo CD's build environment (``newEnv``), the names ``$VAR`` may use."""
    return {
        "ARGOCD_APP_NAME": ctx.app_name,
        "ARGOCD_APP_NAMESPACE": ctx.destination_namespace,
        "ARGOCD_APP_REVISION": ctx.revision,
        "ARGOCD_APP_REVISION_SHORT": ctx.revision[:7],
        "ARGOCD_APP_SOURCE_REPO_URL": source.repo_url,
        "ARGOCD_APP_SOURCE_PATH": source.path,
        "ARGOCD_APP_SOURCE_TARGET_REVISION": source.target_revision,
    }


_SPECIAL = set("*#$@!?-0123456789")


def argo_envsubst(text: str, env: Mapping[str, str]) -> str:
    """``text`` with ``$NAME`` / ``${NAME}`` replaced as Go's ``os.Expand`` does with Argo's
    mapping: unknown names become empty, ``$$`` is a literal ``$``, a ``$`` followed by
    nothing name-like stays, malformed ``${`` is eaten."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        rest = text[i + 1 :]
        if rest[0] == "{":
            if len(rest) > 2 and rest[1] in _SPECIAL and rest[2] == "}":
                name, width = rest[1], 3
            else:
                close = rest.find("}")
                if close <= 0:
                    i += 2  # "${" unterminated: os.Expand eats the brace
                    continue
                name, width = rest[1:close], close + 1
                if not name:
                    i += 1 + width  # "${}": bad syntax, eaten
                    continue
        elif rest[0] in _SPECIAL:
            name, width = rest[0], 1
        else:
            m = re.match(r"[A-Za-z0-9_]+", rest)
            if m is None:
                out.append("$")
                i += 1
                continue
            name, width = m.group(0), m.end()
        out.append("$" if name == "$" else env.get(name, ""))
        i += 1 + width
    return "".join(out)


def escape_set_value(value: str) -> str:
    """Argo's ``cleanSetParameters``: ``{a,b}`` list syntax kept, other commas escaped
    unless already escaped (``--set`` would split on them)."""
    if value.startswith("{") and value.endswith("}"):
        return value
    out: list[str] = []
    prev = ""
    for ch in value:
        out.append("," if ch == "," and prev == "\\" else ("\\," if ch == "," else ch))
        prev = ch
    return "".join(out)


def _inside(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    base = root.resolve()
    return resolved == base or base in resolved.parents


def resolve_value_path(raw: str, *, app_path: Path, repo_root: Path, what: str) -> Path:
    """``pathutil.ResolveValueFilePathOrUrl`` for local files: relative to the chart path,
    ``/x`` relative to the repository root, never outside the repository."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", raw):
        raise RenderError(
            f"{what} {raw!r}: remote value files are not supported; commit the file to a Git "
            "source (use a `ref:` source and `$ref/path` for another repository)"
        )
    candidate = repo_root / raw.lstrip("/") if raw.startswith("/") else app_path / raw
    if not _inside(candidate, repo_root):
        raise RenderError(f"{what} {raw!r}: resolves outside the repository; refusing it")
    return candidate


def value_file_paths(
    helm: HelmSource,
    *,
    app_path: Path,
    repo_root: Path,
    refs: Mapping[str, Path],
    env: Mapping[str, str],
) -> list[Path]:
    """The ``--values`` files in order (Argo's ``getResolvedValueFiles``): ``$ref/...``
    through the source with that ``ref``; missing files are an error unless
    ``ignoreMissingValueFiles``."""
    found: list[Path] = []
    for raw in helm.value_files:
        what = "helm.valueFiles"
        first, _, tail = raw.partition("/")
        if raw.startswith("$") and first[1:] in refs:
            root = refs[first[1:]]
            path = resolve_value_path(
                "/" + argo_envsubst(tail, env), app_path=root, repo_root=root, what=what
            )
        elif raw.startswith("$") and "/" in raw and re.fullmatch(r"\$[A-Za-z0-9_-]+", first):
            raise RenderError(
                f"{what} {raw!r}: no source has `ref: {first[1:]}`; add it to spec.sources"
            )
        else:
            path = resolve_value_path(
                argo_envsubst(raw, env), app_path=app_path, repo_root=repo_root, what=what
            )
        if not path.is_file():
            if helm.ignore_missing_value_files:
                continue
            raise RenderError(
                f"{what} {raw!r}: file not found (set helm.ignoreMissingValueFiles to skip "
                "missing files)"
            )
        found.append(path)
    return found


def release_name(helm: HelmSource | None, app_name: str) -> str:
    return (helm.release_name if helm is not None else "") or app_name


def template_args(
    chart_dir: Path,
    *,
    helm: HelmSource | None,
    ctx: RenderContext,
    value_files: Sequence[Path] = (),
    inline_values: Path | None = None,
    file_parameters: Sequence[tuple[str, Path]] = (),
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The arguments after ``helm`` for ``helm template`` (see the module docstring)."""
    h = helm or HelmSource()
    env = env or {}
    args = ["template", str(chart_dir), "--name-template", release_name(helm, ctx.app_name)]
    namespace = h.namespace or ctx.destination_namespace
    if namespace:
        args += ["--namespace", namespace]
    kube_version = h.kube_version or ctx.cluster.kube_version
    if kube_version:
        args += ["--kube-version", kube_version]
    # Argo keeps parameters in maps: one value per name, the last one written wins
    sets: dict[str, str] = {}
    set_strings: dict[str, str] = {}
    for p in h.parameters:
        target, other = (set_strings, sets) if p.force_string else (sets, set_strings)
        target[p.name] = argo_envsubst(p.value, env)
        other.pop(p.name, None)
    for name, value in sets.items():
        args += ["--set", f"{name}={escape_set_value(value)}"]
    for name, value in set_strings.items():
        args += ["--set-string", f"{name}={escape_set_value(value)}"]
    for name, path in file_parameters:
        args += ["--set-file", f"{name}={escape_set_value(str(path))}"]
    for path in value_files:
        args += ["--values", str(path)]
    if inline_values is not None:
        args += ["--values", str(inline_values)]
    for api in h.api_versions or ctx.cluster.api_versions:
        args += ["--api-versions", api]
    if not h.skip_crds:
        args.append("--include-crds")
    if h.skip_schema_validation:
        args.append("--skip-schema-validation")
    if h.skip_tests:
        args.append("--skip-tests")
    return args


def api_versions_of(resources: Sequence[tuple[str, str, str]]) -> tuple[str, ...]:
    """``--api-versions`` from discovery (group, version, kind): each ``group/version`` and
    ``group/version/Kind``, as Argo's ``APIResourcesToStrings(..., true)``."""
    out: set[str] = set()
    for group, version, kind in resources:
        gv = f"{group}/{version}" if group else version
        out.add(gv)
        if kind:
            out.add(f"{gv}/{kind}")
    return tuple(sorted(out))


def semver_of(git_version: str) -> str:
    """``v1.30.2+k3s1`` -> ``1.30.2`` (what ``--kube-version`` accepts); "" if unparsable."""
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", git_version.strip())
    if m is None:
        return ""
    return f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}"


# --------------------------------------------------------------------------- running helm


def render_chart(
    chart_dir: Path,
    repo_root: Path,
    source: ApplicationSource,
    ctx: RenderContext,
    *,
    label: str,
    timeout_s: float = DEFAULT_HELM_TIMEOUT_S,
) -> str:
    """Run ``helm template`` on ``chart_dir`` (inside ``repo_root``); its stdout."""
    check_blocking("helm")
    helm = source.helm
    env = build_env(source, ctx)
    refs = dict(ctx.refs or {})
    files: list[Path] = []
    file_params: list[tuple[str, Path]] = []
    if helm is not None:
        files = value_file_paths(helm, app_path=chart_dir, repo_root=repo_root, refs=refs, env=env)
        for fp in helm.file_parameters:
            path = resolve_value_path(
                argo_envsubst(fp.path, env),
                app_path=chart_dir,
                repo_root=repo_root,
                what=f"helm.fileParameters {fp.name}",
            )
            file_params.append((fp.name, path))
    binary = find_helm()
    with tempfile.TemporaryDirectory(prefix="hub-helm-") as tmp:
        inline = None
        if helm is not None and helm.values_yaml.strip():
            inline = Path(tmp) / "values.yaml"
            inline.write_text(helm.values_yaml, encoding="utf-8")
        args = template_args(
            chart_dir,
            helm=helm,
            ctx=ctx,
            value_files=files,
            inline_values=inline,
            file_parameters=file_params,
            env=env,
        )
        # helm's own config and caches in a throwaway home: nothing of the user's helm
        # setup (repositories, plugins, registry logins) changes what Git renders to.
        helm_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": tmp,
            "HELM_CACHE_HOME": f"{tmp}/cache",
            "HELM_CONFIG_HOME": f"{tmp}/config",
            "HELM_DATA_HOME": f"{tmp}/data",
        }
        try:
            proc = subprocess.run(
                [binary, *args],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
                cwd=str(chart_dir),
                env=helm_env,
            )
        except subprocess.TimeoutExpired as exc:
            raise RenderError(
                f"{label}: `helm template` did not finish within {timeout_s:g}s"
            ) from exc
        except OSError as exc:
            raise RenderError(f"{label}: cannot run {binary}: {exc}") from exc
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split())
        # --api-versions lists are long and say nothing about the failure (Argo drops them)
        detail = re.sub(r"(--api-versions \S+ )+", "<api versions removed> ", detail)[:2000]
        raise RenderError(f"{label}: `helm template` failed (exit {proc.returncode}): {detail}")
    return proc.stdout


def is_chart_dir(path: Path) -> bool:
    return (path / CHART_FILE).is_file()
