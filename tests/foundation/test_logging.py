"""Logging: JSON lines off a terminal (journald), levels from the flag or the environment."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from zoo_node.errors import ConfigError
from zoo_node.logs import JsonFormatter, parse_level

PROGRAM = """
import logging, sys
from zoo_node.logs import configure_logging
configure_logging(sys.argv[1] if len(sys.argv) > 1 else None)
log = logging.getLogger("zoo_node.test")
log.debug("quiet detail")
log.info("node ready", extra={"peers": 3})
log.warning("peer gone")
"""


def run(*args: str, env: dict[str, str] | None = None) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, env={**(env or {})}, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stderr.splitlines()]


def test_json_lines_when_not_a_terminal() -> None:
    records = run()
    assert [r["msg"] for r in records] == ["node ready", "peer gone"]
    assert records[0]["level"] == "info" and records[0]["logger"] == "zoo_node.test" and records[0]["peers"] == 3
    assert records[0]["ts"].endswith("+00:00")


def test_level_from_flag_and_environment() -> None:
    assert run("debug")[0]["msg"] == "quiet detail"
    assert [r["msg"] for r in run(env={"ZOO_NODE_LOG_LEVEL": "warning"})] == ["peer gone"]


def test_bad_level_names_it() -> None:
    with pytest.raises(ConfigError, match="'loud'"):
        parse_level("loud")


def test_exception_is_kept_in_the_json() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in entry["exc"]
