"""The sync engine's pure core: Application model, render, validate, diff, plan, health.

The I/O half (apply, prune, hook execution, live cache, history, CLI) calls these. See
docs/sync.md for what is supported and where we differ from Argo CD.
"""

from __future__ import annotations

from hub.sync.diff import (
    AppComparison,
    JqRunner,
    ResourceDiff,
    SyncStatus,
    compare_app,
    compare_resource,
)
from hub.sync.health import (
    AppHealth,
    Health,
    HealthRules,
    HealthStatus,
    Outcome,
    app_health,
    gate_health,
    is_fresh,
    resource_health,
    task_outcome,
)
from hub.sync.model import (
    Application,
    AppSpecError,
    DiffError,
    EmptyRenderGuardError,
    ManifestError,
    RenderError,
    SharedResourceError,
    SyncError,
    SyncOptions,
    UnsupportedSourceError,
    parse_application,
    parse_application_yaml,
)
from hub.sync.plan import Action, PlanWave, SyncPlan, SyncTask, kind_rank, plan_deletion, plan_sync
from hub.sync.render import RenderResult, render_source
from hub.sync.resources import FIELD_MANAGER, TRACKING_ANNOTATION, Phase, ResourceKey, owning_app
from hub.sync.retry import SelfHealBackoff, retry_delay_s, should_retry
from hub.sync.validate import KindScopes, SourcedManifest, ValidatedManifests, validate_manifests

__all__ = [
    "FIELD_MANAGER",
    "TRACKING_ANNOTATION",
    "Action",
    "AppComparison",
    "AppHealth",
    "AppSpecError",
    "Application",
    "DiffError",
    "EmptyRenderGuardError",
    "Health",
    "HealthRules",
    "HealthStatus",
    "JqRunner",
    "KindScopes",
    "ManifestError",
    "Outcome",
    "Phase",
    "PlanWave",
    "RenderError",
    "RenderResult",
    "ResourceDiff",
    "ResourceKey",
    "SelfHealBackoff",
    "SharedResourceError",
    "SourcedManifest",
    "SyncError",
    "SyncOptions",
    "SyncPlan",
    "SyncStatus",
    "SyncTask",
    "UnsupportedSourceError",
    "ValidatedManifests",
    "app_health",
    "compare_app",
    "compare_resource",
    "gate_health",
    "is_fresh",
    "kind_rank",
    "owning_app",
    "parse_application",
    "parse_application_yaml",
    "plan_deletion",
    "plan_sync",
    "render_source",
    "resource_health",
    "retry_delay_s",
    "should_retry",
    "task_outcome",
    "validate_manifests",
]
