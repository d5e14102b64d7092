"""Logged errors: a readable traceback in both formats, never the local variables of a frame."""

import json
import subprocess
import sys

import pytest

# Logs an error the way uvicorn does, from a frame whose local variable contains a secret.
PROGRAM = """
import logging, sys
from services.kit.logging import configure_logging, get_logger

configure_logging(service="probe", log_format=sys.argv[1])

def handle():
    api_key = "nk_secret_" + "0123456789"
    raise ValueError("invalid body")

try:
    handle()
except ValueError:
    logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    get_logger("probe").exception("request.failed")
"""


def _log_output(log_format: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", PROGRAM, log_format], capture_output=True, text=True, timeout=60, check=True
    )
    return completed.stderr


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_traceback_without_local_variables(log_format: str) -> None:
    output = _log_output(log_format)

    assert output.count("ValueError: invalid body") == 2
    assert "nk_secret_0123456789" not in output


def test_json_lines_carry_the_traceback() -> None:
    lines = [json.loads(line) for line in _log_output("json").splitlines()]

    assert [line["event"] for line in lines] == ["Exception in ASGI application", "request.failed"]
    assert all("ValueError: invalid body" in line["exception"] for line in lines)
    assert "exc_info" not in lines[0]
