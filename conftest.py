"""Root conftest: shared fixture modules, and the split of the suite into two interpreter "planes".

hivemind and py-libp2p cannot be imported into one Python process (their generated protobuf modules both register
`crypto.pb.KeyType`; DESIGN.md), and pytest imports every test module it collects. So one pytest session runs one
plane, chosen with `--plane`: `data` collects only the tests that load hivemind in the pytest process
(`DATAPLANE_PATHS`), `control` collects everything else (py-libp2p may be loaded there). `scripts/test.sh` runs
both. A session whose selection would span both planes (plain `pytest`, or `pytest tests`) stops at once with that
advice instead of failing later with a protobuf error.
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
DATAPLANE_PATHS = ("tests/worker", "tests/accounting/test_cosigning.py", "tests/accounting/test_metering.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--plane",
        choices=("control", "data", "all"),
        default="all",
        help="data: only the tests that load hivemind; control: all the others; all: whatever the selection is, "
        "which must then lie in one plane (hivemind and py-libp2p cannot share an interpreter).",
    )


def _relative(path: Path) -> str | None:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return None


def _inside_dataplane(relative: str) -> bool:
    return any(relative == p or relative.startswith(p + "/") for p in DATAPLANE_PATHS)


def _contains_dataplane(relative: str) -> bool:
    return relative in ("", ".") or any(p.startswith(relative + "/") for p in DATAPLANE_PATHS)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    plane = config.getoption("--plane")
    relative = _relative(collection_path)
    if plane == "all" or relative is None or not relative.startswith("tests"):
        return None
    if plane == "control":
        return True if _inside_dataplane(relative) else None
    # plane == "data": keep the data-plane paths and the folders that lead to them
    return None if _inside_dataplane(relative) or _contains_dataplane(relative) else True


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--plane") != "all":
        return
    selected = [arg.split("::")[0] for arg in config.args] or list(config.getini("testpaths"))
    spans_data = spans_control = False
    for arg in selected:
        relative = _relative(Path(config.invocation_params.dir) / arg)
        if relative is None:
            continue
        if _inside_dataplane(relative):
            spans_data = True
        else:
            spans_control = True
            spans_data = spans_data or _contains_dataplane(relative)
    if spans_data and spans_control:
        raise pytest.UsageError(
            "this selection spans the data-plane tests (hivemind) and the others (py-libp2p), which cannot share "
            "one interpreter: add --plane control or --plane data (scripts/test.sh runs both)"
        )
