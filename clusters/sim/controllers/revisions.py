"""ControllerRevisions: the template history of StatefulSets and DaemonSets.

One revision ``<owner>-<hash>`` per pod template, holding the template as the patch the
real controllers store (``{"spec": {"template": {..., "$patch": "replace"}}}``) and a
revision number; returning to an old template renumbers its revision as the newest, and
revisions beyond ``revisionHistoryLimit`` that no pod uses are deleted. ``kubectl rollout
history`` reads them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from clusters.sim.controllers._util import int_field, is_terminating, owned_by, owner_reference
from clusters.sim.controllers.runtime import Runtime, error_reason
from clusters.sim.interface import Obj
from clusters.sim.readonly import thaw

HASH_LABEL = "controller.kubernetes.io/hash"


def _number(revision: Obj) -> int:
    value = revision.get("revision")
    return value if isinstance(value, int) else 0


async def sync_revisions(
    rt: Runtime,
    owner: Obj,
    template: Mapping[str, Any],
    template_hash: str,
    *,
    keep: Collection[str],
) -> None:
    """Record ``template`` as the owner's newest revision and prune the unused old ones."""
    api = rt.api
    md = owner["metadata"]
    namespace = md.get("namespace", "")
    name = f"{md['name']}-{template_hash}"
    revisions = [
        r for r in await api.list("apps/v1", "ControllerRevision", namespace) if owned_by(r, owner)
    ]
    newest = max((_number(r) for r in revisions), default=0)
    current = next((r for r in revisions if r["metadata"]["name"] == name), None)
    if current is None:
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels[HASH_LABEL] = template_hash
        manifest: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [owner_reference(owner)],
            },
            "data": {"spec": {"template": {**thaw(dict(template)), "$patch": "replace"}}},
            "revision": newest + 1,
        }
        try:
            revisions.append(await api.create(manifest))
        except Exception as exc:
            if error_reason(exc) != "AlreadyExists":
                raise
    elif _number(current) < newest:
        await api.update({**current, "revision": newest + 1})

    limit = int_field(owner.get("spec") or {}, "revisionHistoryLimit", 10)
    unused = sorted(
        (
            r
            for r in revisions
            if r["metadata"]["name"] != name
            and r["metadata"]["name"] not in keep
            and not is_terminating(r)
        ),
        key=_number,
    )
    for revision in unused[: max(len(unused) - limit, 0)]:
        await api.delete("apps/v1", "ControllerRevision", namespace, revision["metadata"]["name"])
