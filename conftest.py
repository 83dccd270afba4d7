"""Root conftest: shared fixture modules, and the split of the suite into two interpreter "planes".

hivemind and py-libp2p cannot be imported into one Python process (their generated protobuf modules both register
`crypto.pb.KeyType`; DESIGN.md). Tests that load hivemind in the pytest process itself are marked `dataplane`;
the rest may load py-libp2p. One pytest session runs one plane: `scripts/test.sh` runs `-m "not dataplane"` and then
`-m dataplane`. A session that collects both fails at once with that advice rather than with a protobuf error later.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.homes",
    "tests.fixtures.chain",
]

ROOT = Path(__file__).resolve().parent
# Test paths that import hivemind (directly or through zoo_node.worker) into the pytest process.
DATAPLANE_PATHS = ("tests/worker/", "tests/accounting/test_cosigning.py")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dataplane: loads hivemind in the test process (run apart from libp2p tests)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        relative = Path(item.fspath).resolve().relative_to(ROOT).as_posix()
        if relative.startswith(DATAPLANE_PATHS):
            item.add_marker(pytest.mark.dataplane)


def pytest_collection_finish(session: pytest.Session) -> None:
    planes = {item.get_closest_marker("dataplane") is not None for item in session.items}
    if planes == {True, False}:
        raise pytest.UsageError(
            "this selection mixes dataplane tests (hivemind) with the others (py-libp2p), which cannot share one "
            'interpreter: run `pytest -m "not dataplane" ...` and `pytest -m dataplane ...` separately '
            "(scripts/test.sh does)"
        )
