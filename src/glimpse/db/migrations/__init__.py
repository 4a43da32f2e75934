"""Alembic migrations; see docs/dev/migrations.md for the expand/contract rules."""
