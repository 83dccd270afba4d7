"""Exponential backoff for restarting the worker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    """Delays `initial_s`, 2x, 4x, ... capped at `max_s`; back to `initial_s` once a run lasted `stable_after_s`."""

    initial_s: float
    max_s: float
    stable_after_s: float | None = None
    attempt: int = 0

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError(f"backoff needs 0 < initial ({self.initial_s}) <= max ({self.max_s})")
        if self.stable_after_s is None:
            self.stable_after_s = max(self.max_s, 10 * self.initial_s)

    def next_delay(self, ran_for_s: float) -> float:
        """The delay before the next start, given how long the last run lasted."""
        assert self.stable_after_s is not None
        if ran_for_s >= self.stable_after_s:
            self.attempt = 0
        delay = min(self.max_s, self.initial_s * (2**self.attempt))
        self.attempt += 1
        return delay
