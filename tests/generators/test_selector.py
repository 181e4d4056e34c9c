"""Label selector matching (cluster selectors and post-selectors)."""

from __future__ import annotations

import pytest

from generators.selector import matches
from generators.spec import LabelSelector, SelectorRequirement

LABELS = {"env": "prod", "region": "eu", "url": "https://1.2.3.4"}


def sel(
    labels: dict[str, str] | None = None, *exprs: tuple[str, str, tuple[str, ...]]
) -> LabelSelector:
    return LabelSelector(
        match_labels=labels or {},
        match_expressions=tuple(
            SelectorRequirement(key=k, operator=o, values=v) for k, o, v in exprs
        ),
    )


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (sel(), True),
        (sel({"env": "prod"}), True),
        (sel({"env": "dev"}), False),
        (sel({"url": "https://1.2.3.4"}), True),
        (sel(None, ("env", "In", ("dev", "prod"))), True),
        (sel(None, ("env", "In", ("dev",))), False),
        (sel(None, ("missing", "In", ("x",))), False),
        (sel(None, ("env", "NotIn", ("prod",))), False),
        (sel(None, ("missing", "NotIn", ("x",))), True),
        (sel(None, ("region", "Exists", ())), True),
        (sel(None, ("missing", "Exists", ())), False),
        (sel(None, ("missing", "DoesNotExist", ())), True),
        (sel(None, ("env", "DoesNotExist", ())), False),
        (sel({"env": "prod"}, ("region", "In", ("us",))), False),
    ],
)
def test_selectors_follow_kubernetes_semantics(selector: LabelSelector, expected: bool) -> None:
    assert matches(selector, LABELS) is expected
