"""The nurturing reports: the stage funnel, time spent in each stage, and the impact of nurturing."""
