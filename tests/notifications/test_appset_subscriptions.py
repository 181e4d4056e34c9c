"""An ApplicationSet subscribes its Applications by annotating its template: the
annotations (templated like the rest) are copied onto each generated Application."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from hub.cli import main
from hub.notifications.config import parse_config
from hub.notifications.events import Subscription, subscriptions

APPSET = """
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: shops
  namespace: argocd
spec:
  goTemplate: true
  generators:
    - list:
        elements:
          - {team: blue}
          - {team: green}
  template:
    metadata:
      name: 'shop-{{.team}}'
      annotations:
        notifications.argoproj.io/subscribe.on-sync-failed.email: '{{.team}}@example.com'
        notifications.argoproj.io/subscribe.on-deployed.hook: ''
    spec:
      project: default
      source: {repoURL: 'https://git.example.com/shop.git', path: shop, targetRevision: HEAD}
      destination: {server: 'https://kubernetes.default.svc', namespace: shop}
"""


def test_template_annotations_subscribe_every_generated_app(tmp_path: Path) -> None:
    path = tmp_path / "appset.yaml"
    path.write_text(APPSET)
    run = CliRunner().invoke(
        main,
        ["--home", str(tmp_path / "home"), "appset", "generate", str(path)],
        env={"HUB_MASTER_KEY": None, "HUB_HOME": None},
        catch_exceptions=False,
    )
    assert run.exit_code == 0, run.output
    apps = list(yaml.safe_load_all(run.stdout))
    config = parse_config("service.webhook.hook: |\n  url: http://127.0.0.1:1\n")
    subs = {
        a["metadata"]["name"]: subscriptions(a["metadata"]["annotations"], config) for a in apps
    }
    assert subs == {
        "shop-blue": [
            Subscription("on-deployed", "hook", ""),
            Subscription("on-sync-failed", "email", "blue@example.com"),
        ],
        "shop-green": [
            Subscription("on-deployed", "hook", ""),
            Subscription("on-sync-failed", "email", "green@example.com"),
        ],
    }
