"""Gossipsub topic names of a run: one topic per message kind, so each has its own rate limit and queue."""

from __future__ import annotations

from dataclasses import dataclass

HEARTBEAT = "heartbeat"
RECEIPT = "receipt"
KINDS = (HEARTBEAT, RECEIPT)


@dataclass(frozen=True)
class RunTopics:
    """`/zoo/run/<run_id>/<kind>/1` for every message kind of a run."""

    run_id: int

    def topic(self, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown topic kind {kind!r}")
        return f"/zoo/run/{self.run_id}/{kind}/1"

    @property
    def heartbeat(self) -> str:
        return self.topic(HEARTBEAT)

    @property
    def receipt(self) -> str:
        return self.topic(RECEIPT)

    def all(self) -> tuple[str, ...]:
        return tuple(self.topic(kind) for kind in KINDS)

    def kind_of(self, topic: str) -> str | None:
        """The kind of one of this run's topics; None for any other topic."""
        for kind in KINDS:
            if topic == self.topic(kind):
                return kind
        return None
