"""Glimpse: an OpenStack Image API v2 service with visibility into long-running image work."""

__version__ = "0.1.0"
