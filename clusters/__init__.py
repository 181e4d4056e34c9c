"""The fleet: cluster registry, credentials, connections, live caches and the simulator."""
