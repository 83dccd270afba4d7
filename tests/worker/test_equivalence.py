"""The sharded model over real worker processes computes what the single-process model computes: for a fixed batch,
the loss and every parameter gradient (fp32, rtol 1e-4)."""

from __future__ import annotations

import pytest
import torch

from tests.worker.conftest import small_spec
from zoo_node.config import load_config
from zoo_node.data.sharding import BatchCoordinates, TokenStream
from zoo_node.model import LocalComposition
from zoo_node.worker.node import WorkerNode, WorkerOptions
from zoo_node.worker.shards import model_parts

pytestmark = pytest.mark.slow


def test_two_stages_and_four_expert_groups_match_the_local_model(swarm_factory, make_home):
    # No averaging round may run during the test: the target batch is never reached.
    spec = small_spec("equiv", averaging={"target_batch_size": 10_000})
    swarm = swarm_factory(spec)
    # Every expert call crosses a process boundary: each stage's expert groups live on the other worker.
    a = swarm.start("a", ["stage/0", "experts/1/0", "experts/1/1"], drive=False)
    a.wait_started()
    b = swarm.start("b", ["stage/1", "experts/0/0", "experts/0/1"], peers=[a.maddr])
    b.wait_started()

    home, _ = make_home("client")
    client = WorkerNode(home, load_config(home), spec, WorkerOptions(initial_peers=[a.maddr], shards=[], drive=False))
    client.start()
    try:
        d = spec.data
        stream = TokenStream.from_spec(
            d.corpus, None, d.tokenizer, None, seq_len=d.seq_len, micro_batch_size=d.micro_batch_size
        )
        rows = torch.tensor(stream.micro_batch(BatchCoordinates(0, 0, 0, "equivalence", 0)))
        tokens, targets = rows[:, :-1], rows[:, 1:]
        for shard in ("stage/0", "stage/1", "experts/0/0", "experts/1/1"):
            assert client.router.replicas(shard, fresh=True), f"{shard} is not announced"
        loss, aux = client.pipeline().loss(tokens, targets, {"micro": "equiv/0", "samples": 4})
        (loss + aux).backward()

        config, partition = model_parts(spec)
        reference = LocalComposition(config, partition, seed=spec.model_seed)
        ref_loss, ref_aux = reference(tokens, targets)
        (ref_loss + ref_aux).backward()
        torch.testing.assert_close(loss.detach(), ref_loss.detach(), rtol=1e-4, atol=0)
        torch.testing.assert_close(aux.detach(), ref_aux.detach(), rtol=1e-4, atol=0)

        owners = {"stage/0": a, "experts/1/0": a, "experts/1/1": a, "stage/1": b, "experts/0/0": b, "experts/0/1": b}
        ref_shards = dict(zip([s.name for s in partition.shards(config)], reference.shards(), strict=True))
        checked = 0
        for shard, worker in owners.items():
            remote = client.inspect(worker.peer, shard)
            local = dict(ref_shards[shard].named_parameters())
            assert set(remote) == set(local), shard
            for name, (param, grad) in remote.items():
                torch.testing.assert_close(param, local[name].detach(), rtol=0, atol=0, msg=f"{shard} {name}")
                ref_grad = local[name].grad
                assert ref_grad is not None and bool(ref_grad.abs().sum() > 0), f"{shard} {name}: no gradient"
                torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7, msg=f"{shard} {name}")
                checked += 1
        assert checked == sum(1 for _ in reference.parameters())
    finally:
        client.drain()
