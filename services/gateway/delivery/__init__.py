"""Delivery of what the gateway received (webhook events, tracking hits) to the contacts service.

The gateway's own row is the system of record; the worker delivers it and retries until contacts
accepts it, so a contacts outage loses nothing.
"""
