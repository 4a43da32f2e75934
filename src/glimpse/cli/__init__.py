"""Command-line entry points: ``glimpse serve``, ``glimpse db ...``."""
