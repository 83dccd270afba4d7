"""The receipts journal: WAL, idempotent appends, conflicts, settlement, and durability across kill -9."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from zoo_node.control.journal import JournalError, ReceiptConflict, ReceiptJournal
from zoo_node.proto import worker_pb2


def receipt(round_: int, shard: str = "stage/0", tokens: int = 100) -> worker_pb2.Receipt:
    return worker_pb2.Receipt(
        run_id=1,
        shard=shard,
        round=round_,
        members=[
            worker_pb2.ReceiptMember(peer_id="12D3KooWa", samples=4),
            worker_pb2.ReceiptMember(peer_id="b", samples=2),
        ],
        tokens=tokens,
        flops=1.5e12,
        seconds=2.0,
        device="cpu",
        cosignatures=[worker_pb2.CoSignature(peer_id="b", signature=b"\x01\x02")],
    )


def test_wal_append_duplicate_conflict_settle_prune(tmp_path: Path) -> None:
    journal = ReceiptJournal(tmp_path / "journal.sqlite3")
    assert journal.journal_mode == "wal"
    first, dup = journal.append(receipt(1))
    assert not dup
    assert journal.append(receipt(1)) == (first, True)  # a worker resubmitting after a crash
    with pytest.raises(ReceiptConflict, match="round 1"):
        journal.append(receipt(1, tokens=999))
    second, _ = journal.append(receipt(2))
    assert journal.get(second) == receipt(2)
    assert [i for i, _ in journal.ungossiped()] == [first, second]
    journal.mark_gossiped([first])
    assert [i for i, _ in journal.ungossiped()] == [second]
    assert journal.mark_settled([first]) == 1
    counts = journal.counts()
    assert (counts.receipts, counts.unsettled, counts.ungossiped) == (2, 1, 1)
    assert journal.mark_settled_before(0) == 0  # nothing was journaled before 1970
    assert journal.prune_settled(older_than_s=-1) == 1  # settled ones may go; the unsettled one stays
    assert [i for i, _ in journal.unsettled()] == [second]
    # An epoch that ended after it was journaled, but it was never announced: not settled, still to announce.
    assert journal.mark_settled_before(time.time() + 1) == 0
    assert [i for i, _ in journal.ungossiped()] == [second]
    journal.mark_gossiped([second])
    assert journal.mark_settled_before(time.time() + 1) == 1
    assert journal.counts().unsettled == 0
    journal.close()


def test_a_damaged_journal_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="cannot open the receipts journal"):
        ReceiptJournal(path)


WRITER = textwrap.dedent(
    """
    import sys
    from zoo_node.control.journal import ReceiptJournal
    from tests.control.test_journal import receipt
    journal = ReceiptJournal(sys.argv[1])
    for round_ in range(1, 100000):
        receipt_id, _ = journal.append(receipt(round_))
        print(receipt_id, flush=True)  # the acknowledgement: only after the commit returned
    """
)


def test_acknowledged_receipts_survive_kill_9_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    repo = Path(__file__).resolve().parents[2]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=repo, stdout=subprocess.PIPE, text=True)
    acked = []
    try:
        assert writer.stdout is not None
        while len(acked) < 50:
            line = writer.stdout.readline()
            assert line, "the writer died"
            acked.append(int(line))
        writer.send_signal(signal.SIGKILL)  # in the middle of writing more
    finally:
        writer.kill()
        writer.wait()
    journal = ReceiptJournal(path)
    for receipt_id in acked:
        assert journal.get(receipt_id) is not None, f"acknowledged receipt {receipt_id} lost"
    assert journal.counts().receipts >= len(acked)
    journal.close()
