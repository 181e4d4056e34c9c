"""Notifications in Argo CD Notifications' format (docs/notifications.md).

``config`` reads ``$HUB_HOME/notifications.yaml`` (the ``data`` of an
argocd-notifications-cm), ``expr`` evaluates the triggers' ``when`` conditions,
``events`` turns an Application's status into outbox rows (exactly once per firing),
``services`` sends one message and ``dispatcher`` drains the outbox inside ``hub serve``.
"""
