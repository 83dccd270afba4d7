"""Zen-3 in pure PyTorch: config and presets, attention, MoE, shards and FLOP counting.

Layering: imports nothing of the network (no libp2p, hivemind, grpc, web3).
"""
