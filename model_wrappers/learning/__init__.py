"""Learned things as deterministic state machines: ``state.apply(event)`` is the only way they change."""
