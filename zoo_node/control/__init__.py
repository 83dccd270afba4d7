"""The control plane: the `zoo-node join` supervisor, the run's py-libp2p swarm, the node API and the receipts journal.

Layering: never imports torch or hivemind.
"""
