"""`python -m zoo_node` is the `zoo-node` command."""

import sys

from zoo_node.cli import main

sys.exit(main())
