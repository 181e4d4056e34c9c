"""Kubernetes label selector matching, for cluster selectors and generator post-selectors.

Standard semantics: ``matchLabels`` and ``matchExpressions`` are ANDed; ``In`` needs the
key with one of the values, ``NotIn`` passes when the key is absent or has another
value, ``Exists``/``DoesNotExist`` test presence. An empty selector matches everything.
Label values are not syntax-checked: Argo CD's post-selectors match on param values
such as cluster URLs, which are not valid label values.
"""

from __future__ import annotations

from collections.abc import Mapping

from generators.spec import LabelSelector


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every requirement of ``selector``."""
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In":
            if not present or labels[req.key] not in req.values:
                return False
        elif req.operator == "NotIn":
            if present and labels[req.key] in req.values:
                return False
        elif req.operator == "Exists":
            if not present:
                return False
        elif req.operator == "DoesNotExist":
            if present:
                return False
        else:  # the parser only lets the four operators through
            raise AssertionError(f"unknown operator {req.operator!r}")
    return True
