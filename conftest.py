"""Root conftest: loads the shared fixture modules (pytest only honours pytest_plugins at the root)."""

pytest_plugins = [
    "tests.fixtures.homes",
    "tests.fixtures.chain",
]
