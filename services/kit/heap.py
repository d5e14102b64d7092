"""Garbage collection for a long-running service process.

A service process imports SQLAlchemy, pydantic, FastAPI and its own models before it serves: about
140,000 objects that the collector tracks, which live as long as the process. CPython's full
collection walks them every time, and in a sending worker one took about 80 ms, once every second
or two. `freeze_startup_objects` moves them out of the collector's sight once the process is set
up, so a full collection walks only the objects made since.
"""

import gc

# Allocations, net of deallocations, between two collections of the youngest generation. CPython's
# default of 700 made the sending worker collect it about seventy times a second.
YOUNG_THRESHOLD = 10_000


def freeze_startup_objects() -> None:
    """Collect the set-up's garbage, then leave every surviving object out of later collections.

    Only the commands that start a service process call this. A frozen object is never collected,
    so a process that builds and drops many apps, as the test suite does, must not freeze them.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
