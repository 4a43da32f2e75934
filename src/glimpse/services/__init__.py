"""Use cases: take a session, the context and plain input; return domain objects; never commit."""
