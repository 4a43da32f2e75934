"""The HTTP face of the service: the OpenStack Image API v2."""
