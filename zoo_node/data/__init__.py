"""Training data for runs: the shipped testnet corpus and tokenizer, and deterministic micro-batch sharding.

Pure Python (no torch): the coordinator can recompute any micro-batch a worker claims to have trained on.
"""
