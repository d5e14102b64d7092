"""Export and erasure of everything the sequencer holds about one contact."""
