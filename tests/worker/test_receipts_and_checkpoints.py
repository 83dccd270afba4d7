"""Receipts (digest, the supervisor's message) and checkpoints (round trip, refusal of another run's)."""

from __future__ import annotations

import pytest
import torch

from zoo_node.runspec import RunSpec
from zoo_node.worker.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from zoo_node.worker.receipts import JsonlReceiptLog, MemberWork, Receipt, read_receipts, receipt_samples
from zoo_node.worker.shards import build_backend
from zoo_node.worker.trainer import make_optimizer


def _receipt(members):
    return Receipt("run", "stage/1", 7, tuple(members), averaged=True)


def test_a_receipt_digest_covers_the_work_and_not_the_order_of_members(tmp_path):
    a = MemberWork("peerA", 8, 512, 1.5e9, 0.25)
    b = MemberWork("peerB", 4, 256, 0.7e9, 0.125)
    assert _receipt([a, b]).digest == _receipt([b, a]).digest
    assert _receipt([a, b]).digest != _receipt([a, MemberWork("peerB", 5, 256, 0.7e9, 0.125)]).digest
    log = JsonlReceiptLog(tmp_path / "r" / "receipts.jsonl")
    log(_receipt([a, b]))
    (saved,) = read_receipts(tmp_path / "r" / "receipts.jsonl")
    assert saved["digest"] == _receipt([a, b]).digest and saved["round"] == 7 and len(saved["members"]) == 2

    assert receipt_samples(_receipt([a, b])) == {"peerA": 8, "peerB": 4}


def test_a_checkpoint_restores_parameters_and_optimizer_state_and_refuses_another_run(tmp_path):
    spec = RunSpec(name="ck")
    backend = build_backend(spec, "experts/0/1", None)
    module = backend.module
    optimizer = make_optimizer(spec, list(module.parameters()))
    for p in module.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    save_checkpoint(tmp_path, CheckpointMeta("ck", spec.content_hash, "experts/0/1", 5), module, optimizer)

    fresh = build_backend(spec, "experts/0/1", None).module
    fresh_opt = make_optimizer(spec, list(fresh.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(fresh.parameters(), module.parameters(), strict=True))
    meta = load_checkpoint(tmp_path, "ck", spec.content_hash, "experts/0/1", fresh, fresh_opt)
    assert meta is not None and meta.round == 5
    for p, q in zip(fresh.parameters(), module.parameters(), strict=True):
        assert torch.equal(p, q)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(fresh_opt.state[p][key], optimizer.state[q][key])
    assert load_checkpoint(tmp_path, "ck", spec.content_hash, "experts/0/0", fresh, fresh_opt) is None
    with pytest.raises(CheckpointError, match="not of this run"):
        load_checkpoint(tmp_path, "ck", "0" * 64, "experts/0/1", fresh, fresh_opt)
