"""Config validation (ValueError naming the field), presets against the announcement, counting on the meta device."""

from __future__ import annotations

import json
import re

import pytest

from zoo_node.model import ANNOUNCED_PARAMS, PRESETS, Partition, Zen3Config, count_parameters, get_preset

SMALL = dict(vocab_size=64, d_model=32, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=128)
MOE = dict(SMALL, moe_layers=(1, 3), n_experts=4, expert_ffn_dim=32)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (dict(n_heads=5), "n_heads"),  # heads not dividing the width
        (dict(n_kv_heads=3), "n_kv_heads"),
        (dict(MOE, top_k=5), "top_k"),  # top_k above the expert count
        (dict(windows=(16, None, 256, None)), "windows[2]"),  # a window beyond the context
        (dict(windows=(16, None)), "windows"),
        (dict(moe_layers=(4,), n_experts=4, expert_ffn_dim=8), "moe_layers"),
        (dict(MOE, n_experts=0), "n_experts"),
        (dict(d_model=0), "d_model"),
        (dict(max_seq_len=1 << 20), "max_seq_len"),  # beyond what the RoPE scaling reaches
        (dict(head_dim=7), "head_dim"),
        (dict(router_aux_loss_coef=-1.0), "router_aux_loss_coef"),
    ],
)
def test_bad_config_names_the_field(changes, field):
    with pytest.raises(ValueError, match="^" + re.escape(field) + ":"):
        Zen3Config(**{**SMALL, **changes})


def test_good_config_and_round_trip():
    cfg = Zen3Config(**MOE, windows=(16, None, 16, None))
    assert cfg.head_size == 8 and cfg.is_moe and cfg.is_moe_layer(3) and not cfg.is_moe_layer(2)
    assert Zen3Config.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match=r"^bogus: not a Zen3Config field"):
        Zen3Config.from_dict({**cfg.to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    ("stages", "groups", "match"),
    [
        (((0, 1), (2, 4)), None, r"^stages\[1\]: layers 1 are in no stage"),  # skips a layer
        (((0, 3), (2, 4)), None, r"^stages\[1\]: layers 2\.\.2 overlap"),  # overlaps
        (((0, 2), (2, 3)), None, r"^stages: layers 3\.\.3 are in no stage"),  # stops short
        (((0, 2), (2, 5)), None, r"^stages: the last stage ends at 5"),
        (((1, 4),), None, r"^stages\[0\]: layers 0 are in no stage"),
        (((0, 2), (2, 2), (2, 4)), None, r"^stages\[1\]: layer range \[2, 2\) is empty"),
        ((), None, "^stages: a partition needs"),
        (((0, 2), (2, 4)), (1,), r"^expert_groups: 1 entries for 2 stages"),
        (((0, 2), (2, 4)), (1, 5), r"^expert_groups\[1\]: 5 groups for 4 experts"),
        (((0, 1), (1, 4)), (1, 1), r"^expert_groups\[0\]: stage 0 has no MoE layers"),
    ],
)
def test_bad_partition_names_the_field(stages, groups, match):
    with pytest.raises(ValueError, match=match):
        Partition(stages, groups).validate(Zen3Config(**MOE))


def test_partition_specs_and_names():
    cfg = Zen3Config(**MOE)
    part = Partition(((0, 1), (1, 4)), (0, 3))
    assert [s.name for s in part.shards(cfg)] == ["stage/0", "stage/1", "experts/1/0", "experts/1/1", "experts/1/2"]
    group = part.shard(cfg, "experts/1/2")
    assert (group.expert_start, group.expert_stop, group.moe_layers) == (2, 4, (1, 3))
    assert [part.expert_group(cfg, 1, g).experts for g in range(3)] == [range(0, 1), range(1, 2), range(2, 4)]
    for bad in ("stage/2", "experts/0/0", "stage", "experts/1/x", "layer/1"):
        with pytest.raises(ValueError, match=r"^shard: "):
            part.shard(cfg, bad)
    even = Partition.even(cfg, 3, 2)
    assert even.stages == ((0, 1), (1, 3), (3, 4)) and even.expert_groups == (0, 2, 2)


@pytest.mark.parametrize("name", list(ANNOUNCED_PARAMS))
def test_presets_within_one_percent_of_the_announcement(name):
    counts = count_parameters(get_preset(name))  # 141B parameters: counted on the meta device, nothing allocated
    total, active = ANNOUNCED_PARAMS[name]
    assert abs(counts.total / total - 1) < 0.01
    assert abs(counts.active / active - 1) < 0.01


def test_presets_share_the_announced_architecture():
    for name in ANNOUNCED_PARAMS:
        cfg = PRESETS[name]
        assert cfg.vocab_size == 131_072 and cfg.max_seq_len == 131_072
        assert cfg.n_kv_heads < cfg.n_heads  # grouped-query attention
        assert any(w is not None for w in cfg.windows) and any(w is None for w in cfg.windows)
        assert cfg.rope_scaling.factor * cfg.rope_scaling.original_max_seq_len >= 131_072
    moe = PRESETS["zen-3-moe"]
    assert (moe.n_experts, moe.top_k) == (64, 2)
    tiny = PRESETS["zen-3-tiny-moe"]
    assert tiny.is_moe and {None, 128} == set(tiny.windows) and 256 <= tiny.vocab_size <= 512
    assert not PRESETS["zen-3-tiny"].is_moe
    with pytest.raises(ValueError, match=r"^preset: unknown preset 'zen-4'"):
        get_preset("zen-4")


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from zoo_node.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_model_info_cli_json(capsys):
    code, out, err = _cli(capsys, "model", "info", "--preset", "zen-3-moe", "--seq-len", "8192", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert abs(info["total_params"] / 141e9 - 1) < 0.01 and abs(info["active_params"] / 24e9 - 1) < 0.01
    assert info["seq_len"] == 8192 and info["flops_per_token"] > 6 * info["active_params"]


def test_model_info_cli_bad_input_is_one_line_exit_2(capsys):
    code, _, err = _cli(capsys, "model", "info", "--preset", "zen-9", "--json")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "unknown preset 'zen-9'" in err
    code, _, err = _cli(capsys, "model", "info", "--preset", "zen-3-tiny", "--seq-len", "200000")
    assert code == 2 and "seq_len: 200000 is beyond the context" in err
