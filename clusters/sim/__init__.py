"""Simulated Kubernetes clusters that speak the real REST protocol (``hub sim``).

Many clusters share one HTTPS port under ``/clusters/NAME``. The hub, the official
``kubernetes`` client and ``kubectl`` reach them exactly as they reach real clusters.
"""

from clusters.sim import compiled as _compiled

# The mypyc build of these modules, when it is current (clusters/sim/compiled.py).
__path__ = _compiled.package_path(__name__, __path__)

from clusters.sim.server import SimServer
from clusters.sim.store import ApiError

__all__ = ["ApiError", "SimServer"]
