"""Deterministic micro-batches: which token windows a node trains on at (seed, epoch, step, node, micro-batch).

Every row of a micro-batch is a window of `seq_len + 1` tokens (inputs and shifted targets) whose start is a hash of
(seed, epoch, step, node, micro, row): no state, no coordination, and anyone holding the corpus recomputes any
micro-batch from its coordinates. Nodes are told apart by their data-plane PeerID, so they draw disjoint streams.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from zoo_node.data.corpus import corpus_bytes
from zoo_node.data.tokenizer import load_tokenizer
from zoo_node.errors import ZooError


@dataclass(frozen=True)
class BatchCoordinates:
    """Where a micro-batch comes from; enough to recompute it."""

    seed: int
    epoch: int
    step: int
    node: str
    micro: int


class TokenStream:
    """A tokenized corpus and the rule that cuts it into micro-batches."""

    def __init__(self, tokens: list[int], seq_len: int, micro_batch_size: int) -> None:
        if seq_len < 1 or micro_batch_size < 1:
            raise ZooError(f"seq_len ({seq_len}) and micro_batch_size ({micro_batch_size}) must be positive")
        if len(tokens) < seq_len + 1:
            raise ZooError(f"the corpus has {len(tokens)} tokens, fewer than one window of {seq_len + 1}")
        self.tokens = tokens
        self.seq_len = seq_len
        self.micro_batch_size = micro_batch_size
        self.windows = len(tokens) - seq_len

    @classmethod
    def from_spec(
        cls, corpus: str, corpus_sha256: str | None, tokenizer: str, tokenizer_sha256: str | None, **kwargs: int
    ) -> TokenStream:
        tok = load_tokenizer(tokenizer, tokenizer_sha256)
        return cls(tok.encode(corpus_bytes(corpus, corpus_sha256).decode("utf-8")), **kwargs)

    def window_start(self, where: BatchCoordinates, row: int) -> int:
        key = f"{where.seed}/{where.epoch}/{where.step}/{where.node}/{where.micro}/{row}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % self.windows

    def micro_batch(self, where: BatchCoordinates) -> list[list[int]]:
        """`micro_batch_size` rows of `seq_len + 1` token ids (inputs are row[:-1], targets row[1:])."""
        rows = []
        for row in range(self.micro_batch_size):
            start = self.window_start(where, row)
            rows.append(self.tokens[start : start + self.seq_len + 1])
        return rows
