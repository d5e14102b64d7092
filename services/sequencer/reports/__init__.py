"""Sequence reports that the per-step report does not cover: email performance per day."""
