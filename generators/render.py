"""Rendering: strings, generator specs and whole Applications from param sets.

What Argo CD does, and so what this module does:

- The template of a generator is its own ``template`` merged over ``spec.template``
  (mergo without override: the generator's non-empty fields win, empty ones are filled
  from the set's template, maps are merged key-wise) — ``merge_template``.
- Every string of the Application template is rendered per param set, map keys too
  (labels, annotations, Helm parameters); other scalars are copied. fasttemplate mode
  substitutes flat keys; goTemplate mode runs Go text/template with
  ``goTemplateOptions``. Templates are compiled once per field, not once per app.
- An empty param set renders nothing: the template is returned as it is (and, as in
  Argo CD, gets no finalizer).
- ``resources-finalizer.argocd.argoproj.io`` is added when the rendered app has no
  finalizers and ``syncPolicy.preserveResourcesOnDeletion`` is false.
- ``templatePatch`` is rendered with the same params, parsed as YAML/JSON and applied
  as a strategic merge patch (Application lists have no merge keys, so lists are
  replaced; ``null`` deletes; ``$patch: replace|delete`` directives on maps work);
  ``spec.project`` is restored after the patch, so a patch cannot move an app into
  another project.
- The namespace is forced to the ApplicationSet's, and gitops-hub adds a label and an
  annotation linking the app to its set (Argo CD uses an ownerReference, which needs
  the set's UID; the hub adds that when it applies).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from generators.errors import GeneratorError
from generators.fasttemplate import FastTemplateError, compile_fast
from generators.gotemplate import Template, TemplateError
from generators.gotemplate import render as go_render
from generators.params import Params, TemplateMode, copy_params
from generators.spec import GENERATOR_KEYS, AppTemplate, load_yaml
from generators.yamlio import YamlError

API_VERSION = "argoproj.io/v1alpha1"
RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"
#: Label on every generated Application: the ApplicationSet's name (hashed if too long).
APPSET_LABEL = "gitops-hub/appset"
#: Annotation on every generated Application: ``<namespace>/<name>`` of its set.
APPSET_ANNOTATION = "gitops-hub/appset"

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


class RenderError(GeneratorError):
    """A template or templatePatch could not be rendered for a param set."""


# --------------------------------------------------------------------------- strings


def render_string(
    source: str, params: Mapping[str, Any], mode: TemplateMode, *, name: str = "template"
) -> str:
    """Render one string the way Argo CD's ``Render.Replace`` does, in either mode."""
    if "{{" not in source:
        # Go's text/template would print such a string unchanged too.
        return source
    if mode.go:
        return go_render(source, params, missing_key=mode.missing_key, name=name)
    try:
        return compile_fast(source).render(params)
    except FastTemplateError as exc:
        raise RenderError(f"{name}: {exc}") from None


StringRenderer = Callable[[Params], str]


def compile_string(source: str, mode: TemplateMode, name: str) -> StringRenderer | str:
    """A renderer for ``source``, or the string itself when nothing needs rendering."""
    if "{{" not in source:
        return source
    if mode.go:
        missing = mode.missing_key
        try:
            compiled = Template.parse(source, name=name)
        except TemplateError as exc:
            # Argo CD only fails when it renders, i.e. for a non-empty param set.
            error = exc

            def unparsable(params: Params) -> str:
                raise error

            return unparsable
        execute = compiled.execute
        return lambda params: execute(params, missing_key=missing)
    try:
        template = compile_fast(source)
    except FastTemplateError as exc:
        message = f"{name}: {exc}"

        def broken(params: Params) -> str:
            raise RenderError(message)

        return broken
    if template.is_static:
        return source
    return template.renderer()


# --------------------------------------------------------------------------- trees

Node = Callable[[Params], Any]


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, Mapping):
        return any("{{" in str(k) or _has_placeholder(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return False


def _is_container(value: Any) -> bool:
    return isinstance(value, Mapping | list)


def _constant_copy(value: Any) -> Node:
    """A builder of fresh copies of a value that holds nothing to render."""
    if isinstance(value, Mapping) and not any(_is_container(v) for v in value.values()):
        flat = dict(value)
        return lambda p: flat.copy()
    if isinstance(value, list) and not any(_is_container(v) for v in value):
        items = list(value)
        return lambda p: items.copy()
    if isinstance(value, Mapping):
        items = [(k, _constant_copy(v)) for k, v in value.items()]
        return lambda p: {k: f(p) for k, f in items}
    if isinstance(value, list):
        fns = [_constant_copy(v) for v in value]
        return lambda p: [f(p) for f in fns]
    return lambda p: value


def compile_tree(value: Any, mode: TemplateMode, path: str) -> Node:
    """Compile a JSON-like tree into a function from params to a freshly built copy.

    Strings (and map keys) are rendered; everything else is copied. Each app gets its
    own containers, so later patching of one app cannot leak into another.
    """
    if not _has_placeholder(value):
        return _constant_copy(value)
    if isinstance(value, str):
        rendered = compile_string(value, mode, path)
        if isinstance(rendered, str):
            return lambda p: rendered
        return rendered
    if isinstance(value, Mapping):
        items: list[tuple[str | StringRenderer, Node]] = []
        dynamic_keys = False
        for key, child in value.items():
            key_fn = compile_string(str(key), mode, f"{path}.{key} (key)")
            dynamic_keys = dynamic_keys or not isinstance(key_fn, str)
            items.append((key_fn, compile_tree(child, mode, f"{path}.{key}")))
        if not dynamic_keys:
            static_items = [(str(k), f) for k, f in items]
            return lambda p: {k: f(p) for k, f in static_items}

        def build(p: Params) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key_fn, f in items:
                out[key_fn if isinstance(key_fn, str) else key_fn(p)] = f(p)
            return out

        return build
    if isinstance(value, list):
        fns = [compile_tree(v, mode, f"{path}[{i}]") for i, v in enumerate(value)]
        return lambda p: [f(p) for f in fns]
    return lambda p: value


def interpolate_generator(
    raw: Mapping[str, Any], params: Params, mode: TemplateMode, path: str
) -> Any:
    """Render a matrix's second child against one param set of the first child.

    Every string is rendered (keys too), except the child's ``template``, which a
    matrix ignores anyway. In go mode the child's own ``values`` are rendered with
    ``missingkey=error`` and kept verbatim where a key is missing, so they can still
    refer to the child's own params (``{{ .path.basename }}``) when it runs.
    """
    strict = TemplateMode(go=True, missing_key="error")

    def walk(value: Any, where: str, parent_key: str, in_values: bool) -> Any:
        if isinstance(value, str):
            if in_values and mode.go:
                try:
                    return render_string(value, params, strict, name=where)
                except GeneratorError:
                    return value
            return render_string(value, params, mode, name=where)
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, child in value.items():
                if key == "template" and parent_key in GENERATOR_KEYS:
                    out[key] = child
                    continue
                new_key = render_string(str(key), params, mode, name=f"{where}.{key} (key)")
                child_values = in_values or (key == "values" and parent_key in ("clusters", "git"))
                out[new_key] = walk(child, f"{where}.{key}", str(key), child_values)
            return out
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]", parent_key, in_values) for i, v in enumerate(value)]
        return value

    return walk(raw, path, "", False)


# --------------------------------------------------------------------------- template merge


def _is_empty(value: Any) -> bool:
    return (
        value is None or value is False or value == 0 or value == "" or value == [] or value == {}
    )


def _fill(dest: Any, src: Any) -> Any:
    """mergo.Merge(dest, src) without override: empty dest values are filled from src."""
    if isinstance(dest, Mapping) and isinstance(src, Mapping):
        out = dict(dest)
        for key, value in src.items():
            if key not in out or _is_empty(out[key]):
                out[key] = value
            else:
                out[key] = _fill(out[key], value)
        return out
    return dest


def merge_template(generator: AppTemplate, base: AppTemplate) -> AppTemplate:
    """A generator's ``template`` over the set's ``spec.template`` (generator wins)."""
    if not generator.metadata and not generator.spec:
        return base
    return AppTemplate(
        metadata=_fill(generator.metadata, base.metadata),
        spec=_fill(generator.spec, base.spec),
    )


# --------------------------------------------------------------------------- strategic merge


def strategic_merge(target: Any, patch: Any) -> Any:
    """A strategic merge patch for a type without list merge keys.

    Maps merge recursively, ``null`` deletes a key, lists and scalars are replaced,
    ``$patch: replace`` replaces a map and ``$patch: delete`` removes it.
    """
    if not isinstance(patch, Mapping):
        return patch
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    body = {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "replace" or not isinstance(target, Mapping):
        return {k: _strip_directives(v) for k, v in body.items() if v is not None}
    if directive is not None:
        raise RenderError(f"templatePatch: unknown $patch directive {directive!r}")
    out = dict(target)
    for key, value in body.items():
        if key.startswith("$"):
            continue  # $retainKeys / $setElementOrder: meaningless without merge keys
        if value is None:
            out.pop(key, None)
            continue
        merged = strategic_merge(out.get(key), value)
        if merged is None and isinstance(value, Mapping):
            out.pop(key, None)
        else:
            out[key] = merged
    return out


def _strip_directives(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    return value


# --------------------------------------------------------------------------- applications


def link_label_value(appset_name: str) -> str:
    """A valid label value for the set's name: as is, or cut with a short hash."""
    if len(appset_name) <= 63 and _LABEL_VALUE.fullmatch(appset_name):
        return appset_name
    digest = hashlib.sha256(appset_name.encode()).hexdigest()[:10]
    head = re.sub(r"[^A-Za-z0-9_.-]", "-", appset_name)[:52].strip("-_.")
    return f"{head}-{digest}" if head else digest


def validate_name(name: Any) -> str | None:
    """Why ``name`` cannot name an Application, or None when it can."""
    if not isinstance(name, str) or not name:
        return "application name is empty"
    if len(name) > 253:
        return f"application name {name[:40]!r}... is longer than 253 characters"
    if "{{" in name:
        return (
            f"application name {name!r} still contains a template placeholder: "
            "the param it names does not exist in this param set (see `--params`)"
        )
    if not _DNS_SUBDOMAIN.fullmatch(name):
        return (
            f"application name {name!r} is not a valid Kubernetes name (lower-case letters, "
            "digits, '-' and '.', starting and ending with a letter or digit)"
        )
    return None


_SOURCE_FIELDS = ("repoURL", "path", "targetRevision", "chart")


def _placed_fields(manifest: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(path, value) of the fields that say where an Application goes and what it deploys."""
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        return []
    out: list[tuple[str, Any]] = [("spec.project", spec.get("project"))]
    dest = spec.get("destination")
    if isinstance(dest, Mapping):
        out += [(f"spec.destination.{k}", dest.get(k)) for k in ("server", "name", "namespace")]
    sources = [("spec.source", spec.get("source"))]
    if isinstance(spec.get("sources"), list):
        sources += [(f"spec.sources[{i}]", s) for i, s in enumerate(spec["sources"])]
    for where, source in sources:
        if isinstance(source, Mapping):
            out += [(f"{where}.{k}", source.get(k)) for k in _SOURCE_FIELDS]
    return out


def validate_fields(manifest: Mapping[str, Any]) -> str | None:
    """Why a rendered Application (whose name is valid) cannot be used, or None: a template
    placeholder left in its project, destination or source. fasttemplate keeps a
    placeholder whose param the set lacks; there it can never be meant."""
    name = manifest.get("metadata", {}).get("name")
    for path, value in _placed_fields(manifest):
        if isinstance(value, str) and "{{" in value:
            return (
                f"application {name!r}: {path} {value!r} still contains a template "
                "placeholder: the param it names does not exist in this param set "
                "(see `--params`)"
            )
    return None


class AppRenderer:
    """Renders the Applications of one (merged) template: compiled once, used per param set."""

    def __init__(
        self,
        template: AppTemplate,
        *,
        mode: TemplateMode,
        appset_name: str,
        appset_namespace: str,
        template_patch: str | None = None,
        preserve_resources_on_deletion: bool = False,
        template_path: str = "spec.template",
    ) -> None:
        self.template = template
        self.mode = mode
        self._metadata = compile_tree(dict(template.metadata), mode, f"{template_path}.metadata")
        self._spec = compile_tree(dict(template.spec), mode, f"{template_path}.spec")
        self._verbatim_metadata = _constant_copy(template.metadata)
        self._verbatim_spec = _constant_copy(template.spec)
        self._patch = (
            compile_string(template_patch, mode, "spec.templatePatch") if template_patch else None
        )
        self._preserve = preserve_resources_on_deletion
        self._namespace = appset_namespace
        self._label = link_label_value(appset_name)
        self._annotation = f"{appset_namespace}/{appset_name}" if appset_namespace else appset_name

    def render(self, params: Params) -> dict[str, Any]:
        """The Application for one param set; raises ``RenderError``/``TemplateError``.

        In goTemplate mode the template works on its own copy of the params: sprig's
        ``set``/``unset``/``merge`` mutate maps, and param sets share nested maps (a
        cluster's labels across a matrix), so one app must not change another's params
        or the param set reported for it.
        """
        if params:
            if self.mode.go:
                params = copy_params(params)
            metadata = self._metadata(params)
            spec = self._spec(params)
            if not self._preserve and not metadata.get("finalizers"):
                metadata["finalizers"] = [RESOURCES_FINALIZER]
        else:
            # Argo CD returns the template itself: in go mode too, nothing is executed.
            metadata, spec = self._verbatim_metadata(params), self._verbatim_spec(params)
        app: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "Application",
            "metadata": metadata,
            "spec": spec,
        }
        if self._patch is not None:
            app = self._apply_patch(app, params)
        return self._finish(app)

    def _apply_patch(self, app: dict[str, Any], params: Params) -> dict[str, Any]:
        patch_source = self._patch
        assert patch_source is not None
        text = patch_source if isinstance(patch_source, str) else patch_source(params)
        try:
            patch = load_yaml(text)
        except YamlError as exc:
            raise RenderError(
                f"spec.templatePatch: rendered patch is not valid YAML: {exc}"
            ) from None
        if patch is None:
            return app
        if not isinstance(patch, Mapping):
            raise RenderError(
                f"spec.templatePatch: rendered patch must be a mapping, got {type(patch).__name__}"
            )
        project = app["spec"].get("project") if isinstance(app.get("spec"), Mapping) else None
        patched = strategic_merge(app, patch)
        if not isinstance(patched, dict):
            raise RenderError("spec.templatePatch: the patch deleted the whole Application")
        metadata = patched.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {} if metadata is None else metadata
            if not isinstance(metadata, dict):
                raise RenderError("spec.templatePatch: metadata must be a mapping")
            patched["metadata"] = metadata
        for key in ("labels", "annotations"):
            value = metadata.get(key)
            if value is not None and (
                not isinstance(value, Mapping)
                or not all(isinstance(v, str) for v in value.values())
            ):
                raise RenderError(f"spec.templatePatch: metadata.{key} must map strings to strings")
        spec = patched.get("spec")
        if spec is None:
            spec = patched["spec"] = {}
        if not isinstance(spec, dict):
            raise RenderError("spec.templatePatch: spec must be a mapping")
        if project is not None:
            spec["project"] = project
        else:
            spec.pop("project", None)
        return patched

    def _finish(self, app: dict[str, Any]) -> dict[str, Any]:
        metadata = app["metadata"]
        if self._namespace:
            metadata["namespace"] = self._namespace
        else:
            metadata.pop("namespace", None)
        labels = dict(metadata.get("labels") or {})
        labels[APPSET_LABEL] = self._label
        annotations = dict(metadata.get("annotations") or {})
        annotations[APPSET_ANNOTATION] = self._annotation
        ordered: dict[str, Any] = {}
        for key in ("name", "namespace"):
            if key in metadata:
                ordered[key] = metadata[key]
        ordered["labels"] = labels
        ordered["annotations"] = annotations
        for key, value in metadata.items():
            if key not in ordered:
                ordered[key] = value
        app["metadata"] = ordered
        return app
