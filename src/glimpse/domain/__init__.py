"""Plain-Python domain: entities, state machines and rules; no HTTP, no SQL."""
