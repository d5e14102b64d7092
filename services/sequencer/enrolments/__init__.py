"""Enrolments, their step runs, and the worker that runs each step when it falls due."""
