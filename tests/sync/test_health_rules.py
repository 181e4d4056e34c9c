"""The hub's health-rules file (``$HUB_HOME/health-rules.yaml``): parsing, errors, effect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.sync.health import HealthRules, HealthStatus, resource_health
from hub.sync.health_rules import HealthRulesError, load_health_rules, parse_health_rules


def obj(api_version: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, **fields}


INGRESS = obj("networking.k8s.io/v1", "Ingress", status={})  # no address: Progressing
CHILD = obj("argoproj.io/v1alpha1", "Application")  # no status: Progressing


def test_no_file_gives_the_defaults(tmp_path: Path) -> None:
    rules = load_health_rules(tmp_path)
    assert resource_health(INGRESS, rules).status is HealthStatus.PROGRESSING  # type: ignore[union-attr]


def test_a_fixed_status_overrides_a_built_in_pitfall(tmp_path: Path) -> None:
    (tmp_path / "health-rules.yaml").write_text(
        "rules:\n  - {group: networking.k8s.io, kind: Ingress, health: Healthy}\n"
    )
    health = resource_health(INGRESS, load_health_rules(tmp_path))
    assert health is not None and health.status is HealthStatus.HEALTHY


def test_a_field_rule_maps_values_and_defers_without_default() -> None:
    rules = parse_health_rules(
        "rules:\n"
        "  - group: example.com\n"
        "    kind: Widget\n"
        "    field: status.phase\n"
        "    map: {Ready: Healthy, Broken: Degraded}\n"
    )
    widget = obj("example.com/v1", "Widget", status={"phase": "Broken"})
    health = resource_health(widget, rules)
    assert health is not None and health.status is HealthStatus.DEGRADED
    assert health.message == "status.phase: Broken"
    assert resource_health(obj("example.com/v1", "Widget"), rules) is None  # deferred


def test_a_field_rule_default_applies_when_the_value_is_unknown() -> None:
    rules = parse_health_rules(
        "rules: [{group: '', kind: ConfigMap, field: data.state, map: {ok: Healthy}, "
        "default: Progressing}]"
    )
    cm = obj("v1", "ConfigMap", data={"state": "warming"})
    assert resource_health(cm, rules).status is HealthStatus.PROGRESSING  # type: ignore[union-attr]


def test_health_none_removes_the_built_in_check() -> None:
    rules = parse_health_rules("rules: [{group: networking.k8s.io, kind: Ingress, health: none}]")
    assert resource_health(INGRESS, rules) is None
    assert not rules.has_check("networking.k8s.io", "Ingress")


def test_app_of_apps_can_be_switched_off_from_the_file() -> None:
    on = parse_health_rules("appOfApps: true")
    off = parse_health_rules("appOfApps: false")
    assert resource_health(CHILD, on).status is HealthStatus.PROGRESSING  # type: ignore[union-attr]
    assert resource_health(CHILD, off) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[1, 2]", "expected a mapping with appOfApps and rules"),
        ("colour: red", "unknown key(s) colour"),
        ("appOfApps: maybe", "appOfApps: expected true or false"),
        ("rules: {a: 1}", "rules: expected a list"),
        ("rules: [5]", "rules[0]: expected a mapping"),
        ("rules: [{kind: Ingress, health: Healthy}]", "rules[0].group: expected a string"),
        ("rules: [{group: '', kind: Pod}]", "rules[0]: give exactly one of health"),
        ("rules: [{group: '', kind: Pod, health: Fine}]", "rules[0].health: 'Fine' is not"),
        ("rules: [{group: '', kind: Pod, field: a..b, map: {x: Healthy}}]", "rules[0].field"),
        ("rules: [{group: '', kind: Pod, field: status.phase}]", "rules[0].map: expected"),
        (
            "rules: [{group: '', kind: Pod, field: status.phase, map: {Up: Great}}]",
            "rules[0].map.Up: 'Great' is not a health status",
        ),
        ("rules: [{group: '', kind: Pod, health: Healthy, map: {}}]", "map and default go"),
        ("rules: [{group: '', kind: Pod, health: Healthy, colour: red}]", "unknown key(s)"),
        ("rules: [unclosed", "not valid YAML"),
    ],
)
def test_bad_files_are_refused_naming_the_file_and_field(text: str, says: str) -> None:
    with pytest.raises(HealthRulesError) as err:
        parse_health_rules(text, "/h/health-rules.yaml")
    assert str(err.value).startswith("/h/health-rules.yaml")
    assert says in str(err.value)
    assert err.value.exit_code == 2


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.sampled_from(
        ["Healthy", "Degraded", "none", "", "*", "status.phase", "Ingress"]
    )
)  # fmt: skip
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                ["group", "kind", "health", "field", "map", "default", "rules", "appOfApps", "x"]
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_any_document_gives_rules_or_the_files_own_error(doc: Any) -> None:
    try:
        rules = parse_health_rules(yaml.safe_dump(doc), "f.yaml")
    except HealthRulesError as exc:
        assert str(exc).startswith("f.yaml")
        return
    assert isinstance(rules, HealthRules)
    for check in [c for _, _, c in rules.custom]:
        check(INGRESS)  # never raises on a real object
