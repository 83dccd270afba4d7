"""Logging: readable with colour on a terminal, one JSON object per line otherwise (journald and log shippers).

The level comes from `--log-level`, else `ZOO_NODE_LOG_LEVEL`, else info. Library code only calls
`logging.getLogger(__name__)`; the CLI configures the root logger once per process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from zoo_node.errors import ConfigError

LEVELS = ("debug", "info", "warning", "error")

# Attributes every LogRecord has; anything else passed through `extra=` is emitted as a JSON field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and every `extra=` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def parse_level(level: str | None) -> int:
    """Map a level name (case-insensitive) to its logging constant; None means info."""
    name = (level or os.environ.get("ZOO_NODE_LOG_LEVEL") or "info").strip().lower()
    if name not in LEVELS:
        raise ConfigError(f"log level {name!r} is not one of {', '.join(LEVELS)}")
    return getattr(logging, name.upper())


def configure_logging(level: str | None = None, *, json_lines: bool | None = None) -> None:
    """Configure the root logger for this process (idempotent).

    `json_lines` defaults to True unless stderr is a terminal.
    """
    numeric = parse_level(level)
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    if json_lines:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False, log_time_format="%H:%M:%S")
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_zoo_node", False):
            root.removeHandler(old)
    handler._zoo_node = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    # Third-party chatter stays at warning unless we debug.
    for noisy in ("hivemind", "libp2p", "web3", "urllib3", "asyncio", "grpc"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING) if numeric > logging.DEBUG else numeric)
