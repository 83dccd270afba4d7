"""Typer command groups of the `zoo-node` CLI, one module per area; `zoo_node.cli` assembles them.

Commands stay thin: parse flags, call a library function, print (rich or --json). Heavy modules (torch, hivemind,
web3) are imported inside the command functions so that `zoo-node --version` and `zoo-node status` start fast.
"""
