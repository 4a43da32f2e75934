"""Command-line entry points: ``glimpse-server serve``, ``glimpse-server db ...``."""
