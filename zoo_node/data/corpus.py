"""Corpora a run can name: the generated testnet corpus shipped with the package, or any text file, by sha256."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from zoo_node.errors import ZooError

TESTNET_CORPUS = "testnet"
# sha256 of zoo_node/data/testnet_corpus.txt (scripts/make_testnet_corpus.py regenerates it).
TESTNET_CORPUS_SHA256 = "ef9d88293b172900e98c0c5dd160d991c060d7547c4ad1da9a417e5be66edd45"


class CorpusError(ZooError):
    """The corpus a run names is missing or does not match its hash."""


def corpus_bytes(name: str, sha256: str | None = None) -> bytes:
    """The corpus' bytes: `testnet` is the shipped file, anything else a path. Checked against `sha256` if given."""
    if name == TESTNET_CORPUS:
        data = resources.files("zoo_node.data").joinpath("testnet_corpus.txt").read_bytes()
    else:
        try:
            data = Path(name).expanduser().read_bytes()
        except OSError as exc:
            raise CorpusError(f"{name}: cannot read the corpus: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise CorpusError(f"corpus {name}: sha256 {digest} differs from the run spec's {sha256}")
    return data
