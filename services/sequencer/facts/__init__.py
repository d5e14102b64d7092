"""The sequencer's own copy of contact facts, fed by the contacts service's events."""
