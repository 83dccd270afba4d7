"""The local multi-process testnet: anvil, a coordinator and N `zoo-node join` nodes on one machine (CPU only).

Layering: control-plane code; never imports torch or hivemind (the nodes it starts do, in their own processes).
"""
