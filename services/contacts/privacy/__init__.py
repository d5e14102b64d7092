"""Erasure and export of one person's data (GDPR articles 17 and 15)."""
