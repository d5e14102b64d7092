"""Limits the gateway puts on callers: body size and requests per API key."""
