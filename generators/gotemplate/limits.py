"""Bounds on one template execution, so a template from Git cannot hang or exhaust the hub.

Go's text/template has no such bounds (Argo CD lives with a stuck reconcile); gitops-hub
renders every ApplicationSet of the fleet in one process, so one set must not stop the rest.
The values are far above what an Application field needs: Kubernetes refuses whole objects
larger than 1.5 MiB.
"""

from __future__ import annotations

from generators.gotemplate.errors import FuncError

#: ``range`` iterations plus ``template`` and ``tpl`` calls in one execution (``tpl``
#: bodies count towards the template that calls them).
MAX_STEPS = 100_000
#: Characters one execution may write, and the longest string a function may return.
MAX_OUTPUT = 1_572_864
#: Elements of a list or map a function may return (``until``, ``seq``, ``concat`` ...).
MAX_ITEMS = 100_000


def check_length(length: int) -> None:
    """Refuse before building a string of ``length`` characters."""
    if length > MAX_OUTPUT:
        raise FuncError(
            f"result would be {length:,} characters, over gitops-hub's limit of {MAX_OUTPUT:,}"
        )


def check_items(count: int) -> None:
    """Refuse before building a list or map of ``count`` elements."""
    if count > MAX_ITEMS:
        raise FuncError(
            f"result would have {count:,} elements, over gitops-hub's limit of {MAX_ITEMS:,}"
        )


def check_result(value: object) -> None:
    """A function's result must fit the limits too (``cat $s $s`` in a loop doubles)."""
    if type(value) is str:
        check_length(len(value))
    elif isinstance(value, list | dict):
        check_items(len(value))


def check_tree(value: object) -> None:
    """Lists and maps built by doubling in a loop (``$l = list $l $l``) share their parts:
    printing or encoding one would expand 2**40 leaves. Count before walking for real."""
    budget = MAX_OUTPUT
    stack = [value]
    while stack:
        v = stack.pop()
        budget -= 1
        if budget < 0:
            raise FuncError(
                f"value has more than {MAX_OUTPUT:,} elements once nested lists and maps "
                "are expanded, over gitops-hub's limit"
            )
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
