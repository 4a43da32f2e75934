"""Image API v2 routers: thin handlers that translate HTTP to service calls."""
