"""Run the real `zoo-node` entry point in a subprocess, with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Variables that would leak the developer's own node into a test.
_SCRUB = ("ZOO_NODE_", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET")


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    base.update(env or {})
    return base


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`zoo-node ARGS` through `python -m zoo_node`, stdin closed (no terminal, so no prompts)."""
    return subprocess.run(
        [sys.executable, "-m", "zoo_node", *args],
        cwd=REPO,
        env=cli_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
