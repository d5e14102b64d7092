"""Benchmarks of the platform against the floor of its own hardware, measured side by side in one run."""
