"""zoo-node: the node daemon of the Zoo Compute Network."""

__version__ = "0.1.0"
