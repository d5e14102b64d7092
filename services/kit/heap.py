"""Garbage collection for a long-running service process.

A service process imports SQLAlchemy, pydantic, FastAPI and its own models before it serves: about
140,000 objects that the collector tracks, which live as long as the process. CPython's full
collection walks them every time, and in a sending worker one took about 80 ms, once every second
or two. `freeze_startup_objects` moves them out of the collector's sight once the process is set
up, so a full collection walks only the objects made since.

The collection thresholds stay CPython's: a larger first threshold would also space out the full
collections, and cyclic garbage that reached the oldest generation would pile up between them.
"""

import gc


def freeze_startup_objects() -> None:
    """Collect the set-up's garbage, then leave every surviving object out of later collections.

    Only the commands that start a service process call this. A frozen object is never collected,
    so a process that builds and drops many apps, as the test suite does, must not freeze them.
    """
    gc.collect()
    gc.freeze()
