"""Simulated Kubernetes clusters that speak the real REST protocol (``hub sim``).

Many clusters share one HTTPS port under ``/clusters/NAME``. The hub, the official
``kubernetes`` client and ``kubectl`` reach them exactly as they reach real clusters.
"""
