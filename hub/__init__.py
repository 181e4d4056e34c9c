"""gitops-hub: the management process of a multi-cluster GitOps fleet."""

__version__ = "0.1.0"
