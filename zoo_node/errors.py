"""Errors that zoo-node reports to a person: one line that names the problem, exit code 2, no traceback."""

from __future__ import annotations


class ZooError(Exception):
    """Base of every error that the CLI prints as one line and exits with code 2.

    Raise a subclass (or this) with a message that names the file, key, address or value at fault;
    anything else that escapes a command is a bug and keeps its traceback.
    """

    exit_code = 2


class ConfigError(ZooError):
    """The configuration (file, environment or flags) is invalid."""


class KeystoreError(ZooError):
    """A key file is missing, corrupted, or the password does not open it."""


class HomeError(ZooError):
    """The node home cannot be created, read or written."""
