"""The simulator's tests hand its controllers frozen copies of what they read.

In production the controllers share the store's objects (no copy per read); here every
read is a ``clusters.sim.readonly.freeze`` copy, so a controller that changes an object in
place fails with ``ReadOnlyError`` instead of silently changing what every other reader
sees. Set at import, before any simulator of this session starts (in-process simulators
and ``hub sim serve`` subprocesses read it when a cluster's controllers start).
"""

from __future__ import annotations

import os

from clusters.sim.objectapi import CHECK_READS_ENV

os.environ.setdefault(CHECK_READS_ENV, "1")
