"""The data plane: serves Zen-3 shards over hivemind, drives micro-batches, averages replicas, meters work.

Layering: may import torch, hivemind and zoo_node.model; never libp2p (py-libp2p and hivemind cannot share a process).
"""
