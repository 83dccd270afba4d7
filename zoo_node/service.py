"""systemd units for `zoo-node join` and `zoo-node coordinator run`, rendered for an installation.

`systemd/*.service` in the repository are these templates rendered with the defaults (a test keeps them in step);
`zoo-node install-service` renders them with the running installation's executable, user and home.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EXECUTABLE = "/usr/local/bin/zoo-node"
DEFAULT_CREDENTIAL = "/etc/zoo-node/keystore-password"

_HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
UMask=0077"""

NODE_UNIT = """\
# zoo-node: the Zoo Compute Network node daemon (supervisor + worker). Written by `zoo-node install-service`.
# The keystore password is a systemd credential: put it in {credential} (mode 0600, owned by root).
[Unit]
Description=Zoo Compute Network node (zoo-node join)
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=600
StartLimitBurst=10

[Service]
Type=notify
NotifyAccess=main
User={user}
Group={group}
SupplementaryGroups=video render
ExecStart={executable} join
ExecReload=/bin/kill -HUP $MAINPID
# STATE_DIRECTORY (/var/lib/zoo-node) becomes the node home; keys, journal and checkpoints live there.
StateDirectory=zoo-node
StateDirectoryMode=0700
LoadCredential=keystore-password:{credential}
# The supervisor pings the watchdog every WatchdogSec/2; SIGTERM drains the worker and exits 0.
WatchdogSec=60
Restart=on-failure
RestartSec=5
TimeoutStopSec=120
KillMode=mixed
LimitNOFILE=65536
{hardening}
# GPUs: the NVIDIA character devices (nvidia0..N, nvidiactl) and the unified-memory devices, nothing else.
DevicePolicy=closed
DeviceAllow=char-nvidia-frontend rw
DeviceAllow=char-nvidia-uvm rw
DeviceAllow=char-nvidia-caps rw
DeviceAllow=/dev/nvidiactl rw
DeviceAllow=/dev/nvidia-uvm rw
DeviceAllow=/dev/nvidia-uvm-tools rw

[Install]
WantedBy=multi-user.target
"""

COORDINATOR_UNIT = """\
# zoo-coordinator: a run owner's coordinator (settles epochs, serves the dashboard). Written by
# `zoo-node install-service --coordinator`. The run spec is {spec}; the keystore password is in {credential}.
[Unit]
Description=Zoo Compute Network run coordinator (zoo-node coordinator run)
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
User={user}
Group={group}
ExecStart={executable} coordinator run --spec {spec}
StateDirectory=zoo-coordinator
StateDirectoryMode=0700
LoadCredential=keystore-password:{credential}
WatchdogSec=60
Restart=on-failure
RestartSec=5
TimeoutStopSec=60
LimitNOFILE=65536
{hardening}
PrivateDevices=yes

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class UnitSettings:
    """What differs between installations."""

    executable: str = DEFAULT_EXECUTABLE
    user: str = "zoo-node"
    group: str = "zoo-node"
    credential: str = DEFAULT_CREDENTIAL
    spec: str = "/etc/zoo-node/run.toml"


def current_executable() -> str:
    """The `zoo-node` of this installation: next to the running interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "zoo-node"
    if beside.exists():
        return str(beside)
    return shutil.which("zoo-node") or DEFAULT_EXECUTABLE


def render_node_unit(settings: UnitSettings = UnitSettings()) -> str:
    return NODE_UNIT.format(hardening=_HARDENING, **vars(settings))


def render_coordinator_unit(settings: UnitSettings = UnitSettings()) -> str:
    return COORDINATOR_UNIT.format(hardening=_HARDENING, **vars(settings))
