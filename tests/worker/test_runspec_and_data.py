"""The run spec (TOML, hash, errors) and the data it names (shipped corpus and tokenizer, deterministic batches)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from zoo_node.data.corpus import TESTNET_CORPUS_SHA256, CorpusError, corpus_bytes
from zoo_node.data.sharding import BatchCoordinates, TokenStream
from zoo_node.data.tokenizer import TokenizerError, load_tokenizer
from zoo_node.runspec import RunSpec, RunSpecError, dump_runspec, load_runspec

REPO = Path(__file__).resolve().parents[2]


def test_the_documented_testnet_spec_loads_and_its_hash_is_stable(tmp_path):
    spec = load_runspec(REPO / "docs" / "examples" / "testnet-run.toml")
    assert spec.model == "zen-3-tiny-moe"
    assert spec.data.corpus_sha256 == TESTNET_CORPUS_SHA256
    assert spec.data.tokenizer_sha256 == load_tokenizer("bytes-v1").sha256
    again = tmp_path / "again.toml"
    again.write_text(dump_runspec(spec))
    assert load_runspec(again).content_hash == spec.content_hash
    changed = spec.model_copy(update={"model_seed": spec.model_seed + 1})
    assert changed.content_hash != spec.content_hash


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\n[averaging]\ncompression = "zip"\n', "averaging.compression"),
        ('name = "x"\n[data]\nseq_len = 0\n', "data.seq_len"),
        ('name = "x"\nbogus = 1\n', "bogus"),
        ('name = "a b"\n', "name"),
        ('name = "x"\n[routing]\nannounce_period_s = 5.0\nrecord_ttl_s = 2.0\n', "record_ttl_s"),
        ("name = \n", "not valid TOML"),
    ],
)
def test_a_bad_spec_names_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(RunSpecError, match=message) as info:
        load_runspec(path)
    assert str(path) in str(info.value)


def test_a_missing_spec_file_is_a_one_line_cli_error(tmp_path, node_home):
    home, _ = node_home
    result = subprocess.run(
        [sys.executable, "-m", "zoo_node.cli", "worker", "--home", str(home), "--run-spec", str(tmp_path / "no.toml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no.toml: cannot read the run spec" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_shipped_corpus_matches_its_hash_and_a_wrong_hash_is_refused(tmp_path):
    data = corpus_bytes("testnet", TESTNET_CORPUS_SHA256)
    assert hashlib.sha256(data).hexdigest() == TESTNET_CORPUS_SHA256
    with pytest.raises(CorpusError, match="differs"):
        corpus_bytes("testnet", "0" * 64)
    other = tmp_path / "c.txt"
    other.write_text("hello")
    assert corpus_bytes(str(other)) == b"hello"
    with pytest.raises(CorpusError, match="cannot read"):
        corpus_bytes(str(tmp_path / "missing.txt"))


def test_the_tokenizer_round_trips_and_unknown_names_are_refused():
    tok = load_tokenizer("bytes-v1", load_tokenizer("bytes-v1").sha256)
    text = "There are five foxes near the hill: 17 plus 25 is 42. Ünïcode too."
    assert tok.decode(tok.encode(text, bos=True, eos=True)) == text
    assert max(tok.encode(text)) < 256 and tok.vocab_size == 259
    with pytest.raises(TokenizerError, match="unknown"):
        load_tokenizer("gpt-17")
    with pytest.raises(TokenizerError, match="differs"):
        load_tokenizer("bytes-v1", "f" * 64)


def test_micro_batches_are_a_pure_function_of_their_coordinates():
    spec = RunSpec(name="d")
    d = spec.data
    stream = TokenStream.from_spec(d.corpus, None, d.tokenizer, None, seq_len=16, micro_batch_size=3)
    where = BatchCoordinates(seed=1, epoch=0, step=5, node="peerA", micro=1)
    batch = stream.micro_batch(where)
    assert len(batch) == 3 and all(len(row) == 17 for row in batch)
    # Recomputed elsewhere (a fresh stream), the same coordinates give the same tokens.
    again = TokenStream.from_spec(d.corpus, None, d.tokenizer, None, seq_len=16, micro_batch_size=3)
    assert again.micro_batch(where) == batch
    # Any other coordinate gives other windows: nodes, steps, epochs and seeds draw different streams.
    for other in (
        BatchCoordinates(1, 0, 5, "peerB", 1),
        BatchCoordinates(1, 0, 6, "peerA", 1),
        BatchCoordinates(1, 1, 5, "peerA", 1),
        BatchCoordinates(2, 0, 5, "peerA", 1),
        BatchCoordinates(1, 0, 5, "peerA", 0),
    ):
        assert stream.micro_batch(other) != batch
    # The windows are the corpus' own text.
    tokens = stream.tokens
    start = stream.window_start(where, 0)
    assert batch[0] == tokens[start : start + 17]
