"""A service process leaves its start-up objects out of later garbage collections."""

import subprocess
import sys

SCRIPT = """
import gc
from services.cli import services
from services.kit.heap import freeze_startup_objects

services.worker_settings("sequencer")
freeze_startup_objects()
print(gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_freeze_leaves_startup_objects_out() -> None:
    # In a process of its own, because a frozen object is never collected.
    output = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    frozen, tracked = int(output[0]), int(output[1])

    assert frozen > 50_000
    assert tracked < frozen / 10
