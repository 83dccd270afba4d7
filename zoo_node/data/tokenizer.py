"""The testnet tokenizer: byte-level (every UTF-8 byte is a token) plus BOS, EOS and PAD.

A byte-level vocabulary needs no trained merges, so every node tokenizes identically from the spec alone; its name
and content hash (`TOKENIZER_SHA256`, the hash of its canonical description) go into the run spec.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from zoo_node.errors import ZooError


class TokenizerError(ZooError):
    """The run names a tokenizer this node does not have, or its hash differs."""


@dataclass(frozen=True)
class ByteTokenizer:
    """Token ids 0..255 are bytes; 256, 257, 258 are BOS, EOS and PAD."""

    name: str = "bytes-v1"
    bos_id: int = 256
    eos_id: int = 257
    pad_id: int = 258

    @property
    def vocab_size(self) -> int:
        return 259

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        ids = list(text.encode("utf-8"))
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": "bytes", "bos": self.bos_id, "eos": self.eos_id, "pad": self.pad_id}

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()


TOKENIZERS = {"bytes-v1": ByteTokenizer()}


def load_tokenizer(name: str, sha256: str | None = None) -> ByteTokenizer:
    """The tokenizer a run spec names; `TokenizerError` if unknown or if its hash differs from the spec's."""
    try:
        tokenizer = TOKENIZERS[name]
    except KeyError:
        raise TokenizerError(f"tokenizer {name!r} is unknown (known: {', '.join(sorted(TOKENIZERS))})") from None
    if sha256 is not None and sha256 != tokenizer.sha256:
        raise TokenizerError(f"tokenizer {name!r}: hash {tokenizer.sha256} differs from the run spec's {sha256}")
    return tokenizer
