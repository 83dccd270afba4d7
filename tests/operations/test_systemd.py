"""systemd units: the committed ones are the rendered templates, and `systemd-analyze verify` says nothing of them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.foundation.cli_runner import run_cli
from zoo_node.service import DEFAULT_EXECUTABLE, render_coordinator_unit, render_node_unit

REPO = Path(__file__).resolve().parents[2]
UNITS = {"zoo-node.service": render_node_unit, "zoo-coordinator.service": render_coordinator_unit}


def verify(unit: Path) -> str:
    """Everything `systemd-analyze verify` prints: it exits 0 on warnings, so any output is a failure."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/setup.sh installs the systemd package"
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    return (proc.stdout + proc.stderr).strip() + ("" if proc.returncode == 0 else f"\nexit {proc.returncode}")


@pytest.mark.parametrize("name", sorted(UNITS))
def test_committed_unit_is_the_rendered_template(name: str) -> None:
    assert (REPO / "systemd" / name).read_text() == UNITS[name](), "regenerate systemd/ from zoo_node/service.py"


@pytest.mark.parametrize("name", sorted(UNITS))
def test_committed_unit_verifies_clean(name: str, tmp_path: Path) -> None:
    # verify fails when ExecStart's binary does not exist: point it at this installation's executable.
    fake_exe = tmp_path / "zoo-node"
    fake_exe.write_text("#!/bin/sh\n")
    fake_exe.chmod(0o755)
    unit = tmp_path / name
    unit.write_text((REPO / "systemd" / name).read_text().replace(DEFAULT_EXECUTABLE, str(fake_exe)))
    assert verify(unit) == ""


@pytest.mark.parametrize("flag", [[], ["--coordinator"]])
def test_install_service_writes_a_unit_that_verifies_clean(flag: list[str], tmp_path: Path) -> None:
    name = "zoo-coordinator.service" if flag else "zoo-node.service"
    unit = tmp_path / name
    result = run_cli("install-service", *flag, "--output", str(unit), "--user", "operator")
    assert result.returncode == 0, result.stderr
    text = unit.read_text()
    assert "User=operator" in text and f"ExecStart={DEFAULT_EXECUTABLE}" not in text
    for needle in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "LoadCredential=keystore-password:"):
        assert needle in text
    assert verify(unit) == ""


def test_node_unit_hardening_and_gpu_access() -> None:
    text = render_node_unit()
    for needle in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=zoo-node",
        "DeviceAllow=char-nvidia-frontend rw",
        "DevicePolicy=closed",
    ):
        assert needle in text


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check is live: an unknown key and a bad value produce output, though the exit code stays 0."""
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nRestartt=always\nWatchdogSec=soon\n")
    output = verify(unit)
    assert "Restartt" in output and "soon" in output
