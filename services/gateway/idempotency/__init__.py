"""Idempotency-Key handling for the public POST routes."""
