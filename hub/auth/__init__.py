"""Who may do what: local users and their tokens, Argo CD's RBAC policy, the audit trail.

- ``hub.auth.policy``: the policy (``$HUB_HOME/rbac.csv``, ``rbac.yaml`` and the
  AppProjects' roles) evaluated with casbin under Argo CD's model;
- ``hub.auth.tokens``: users and API tokens, stored hashed;
- ``hub.auth.audit``: one row and one log line per write, with who, where and the result.
"""
