"""ApplicationSet parsing and generator expansion. Pure: no network, no store, no threads."""
