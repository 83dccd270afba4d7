"""The node's three keys, kept in `<home>/keys/`:

- `operator.json`: the operator's secp256k1 key (an Ethereum account) as an encrypted keystore v3 file (scrypt),
  mode 0600. It signs transactions and settlement claims; only this one needs the password.
- `control.ed25519`: the control plane's libp2p identity, a raw 32-byte Ed25519 seed (what py-libp2p's
  `ed25519.create_new_key_pair(seed)` takes). Its PeerID is registered on chain.
- `data.p2pd.key`: the data plane's libp2p identity in the format p2pd's `-id` flag reads: a protobuf
  `PrivateKey{Type: Ed25519, Data: seed || public key}` (64 bytes of data; p2pd rejects a bare 32-byte seed).

PeerIDs are computed here (the identity multihash of the protobuf `PublicKey`, base58btc) so that the control plane,
the worker and the chain code agree without importing libp2p or hivemind.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from zoo_node.errors import HomeError, KeystoreError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

KEYS_DIR = "keys"
OPERATOR_KEYSTORE = "operator.json"
CONTROL_KEY = "control.ed25519"
DATA_KEY = "data.p2pd.key"
CREDENTIAL_NAME = "keystore-password"
# geth's "standard" scrypt cost (n=2^18): about a second and 256 MiB to open, which is the point.
DEFAULT_SCRYPT_N = 1 << 18

_KEY_TYPE_ED25519 = 1
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True)
class KeyPaths:
    """Where a home keeps its keys."""

    keys_dir: Path
    operator_keystore: Path
    control_key: Path
    data_key: Path

    @classmethod
    def of(cls, home: Path) -> KeyPaths:
        keys = Path(home) / KEYS_DIR
        return cls(keys, keys / OPERATOR_KEYSTORE, keys / CONTROL_KEY, keys / DATA_KEY)

    def all(self) -> tuple[Path, Path, Path]:
        return (self.operator_keystore, self.control_key, self.data_key)


@dataclass(frozen=True)
class PublicIdentity:
    """What a node's keys show without the password: `zoo-node keys show`."""

    operator_address: str
    control_peer_id: str
    data_peer_id: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rem = divmod(number, 58)
        out = _B58_ALPHABET[rem] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def ed25519_public_bytes(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def peer_id_from_ed25519_public(public: bytes) -> str:
    """libp2p PeerID of an Ed25519 public key: identity multihash of the protobuf PublicKey, in base58btc."""
    if len(public) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, got {len(public)}")
    proto = bytes([0x08, _KEY_TYPE_ED25519, 0x12, 32]) + public  # PublicKey{Type=1, Data=32 bytes}
    return _b58encode(bytes([0x00, len(proto)]) + proto)  # identity multihash (code 0x00)


def encode_p2pd_private_key(seed: bytes) -> bytes:
    """p2pd's identity file: protobuf PrivateKey{Type: Ed25519, Data: seed || public key}."""
    public = ed25519_public_bytes(Ed25519PrivateKey.from_private_bytes(seed))
    data = seed + public
    return bytes([0x08, _KEY_TYPE_ED25519, 0x12, len(data)]) + data


def decode_p2pd_private_key(blob: bytes) -> bytes:
    """The 32-byte seed inside a p2pd identity file; raises ValueError on anything else."""
    if len(blob) != 68 or blob[:4] != bytes([0x08, _KEY_TYPE_ED25519, 0x12, 64]):
        raise ValueError("not a p2pd Ed25519 PrivateKey (expected 68 bytes: 08 01 12 40 || seed || pubkey)")
    seed, public = blob[4:36], blob[36:]
    if ed25519_public_bytes(Ed25519PrivateKey.from_private_bytes(seed)) != public:
        raise ValueError("p2pd key file: the public half does not match the seed")
    return seed


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeystoreError(f"{path}: {what} not found (run `zoo-node init` first)") from None
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot read {what}: {exc.strerror}") from None


def load_control_seed(home: Path) -> bytes:
    """The control plane's 32-byte Ed25519 seed (py-libp2p: `ed25519.create_new_key_pair(seed)`)."""
    path = KeyPaths.of(home).control_key
    seed = _read_bytes(path, "control-plane key")
    if len(seed) != 32:
        raise KeystoreError(f"{path}: corrupted control-plane key (expected 32 bytes, got {len(seed)})")
    return seed


def load_control_key(home: Path) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(load_control_seed(home))


def load_data_seed(home: Path) -> bytes:
    """The data plane's 32-byte Ed25519 seed, read from its p2pd identity file."""
    path = KeyPaths.of(home).data_key
    try:
        return decode_p2pd_private_key(_read_bytes(path, "data-plane key"))
    except ValueError as exc:
        raise KeystoreError(f"{path}: corrupted data-plane key: {exc}") from None


def _read_keystore(home: Path) -> dict:
    path = KeyPaths.of(home).operator_keystore
    raw = _read_bytes(path, "operator keystore")
    try:
        keystore = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KeystoreError(f"{path}: corrupted operator keystore (not JSON)") from None
    if not isinstance(keystore, dict) or keystore.get("version") != 3 or "crypto" not in keystore:
        raise KeystoreError(f"{path}: corrupted operator keystore (not a keystore v3 file)")
    address = keystore.get("address")
    if not isinstance(address, str) or len(address.removeprefix("0x")) != 40:
        raise KeystoreError(f"{path}: corrupted operator keystore (no valid address field)")
    return keystore


def operator_address(home: Path) -> str:
    """The operator's checksummed address, from the keystore's public field (no password needed)."""
    from eth_utils import to_checksum_address

    return to_checksum_address("0x" + _read_keystore(home)["address"].removeprefix("0x"))


def load_operator_account(home: Path, password: str) -> LocalAccount:
    """Decrypt the operator keystore; `KeystoreError` if the password is wrong or the file is damaged."""
    from eth_account import Account

    path = KeyPaths.of(home).operator_keystore
    keystore = _read_keystore(home)
    try:
        private_key = Account.decrypt(keystore, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeystoreError(f"{path}: wrong password for the operator keystore") from None
        raise KeystoreError(f"{path}: corrupted operator keystore: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise KeystoreError(f"{path}: corrupted operator keystore: missing or bad field {exc}") from None
    account = Account.from_key(private_key)
    if account.address.lower() != "0x" + keystore["address"].lower().removeprefix("0x"):
        raise KeystoreError(f"{path}: corrupted operator keystore (address does not match the key)")
    return account


def load_public_identity(home: Path) -> PublicIdentity:
    """Operator address and both PeerIDs, read without the password."""
    return PublicIdentity(
        operator_address=operator_address(home),
        control_peer_id=peer_id_from_ed25519_public(ed25519_public_bytes(load_control_key(home))),
        data_peer_id=peer_id_from_ed25519_public(
            ed25519_public_bytes(Ed25519PrivateKey.from_private_bytes(load_data_seed(home)))
        ),
    )


def _write_secret(path: Path, data: bytes) -> None:
    """Write a file created with mode 0600 (never world-readable, not even for an instant)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_home(home: Path) -> Path:
    """Create the home (mode 0700) and its keys folder; `HomeError` naming the path if that is impossible."""
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)
        (home / KEYS_DIR).mkdir(mode=0o700, exist_ok=True)
        probe = home / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HomeError(f"{home}: cannot use as the node home: {exc.strerror or exc}") from None
    return home


def create_keys(home: Path, password: str, *, force: bool = False, scrypt_n: int = DEFAULT_SCRYPT_N) -> PublicIdentity:
    """Generate the operator keystore and both Ed25519 keys in `<home>/keys/`.

    Refuses (KeystoreError) to overwrite an existing key unless `force`.
    """
    from eth_account import Account

    if not password:
        raise KeystoreError("the keystore password is empty")
    paths = KeyPaths.of(ensure_home(home))
    existing = [p for p in paths.all() if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise KeystoreError(f"keys already exist ({names}); pass --force to replace them (the old ones are lost)")
    account = Account.create()
    keystore = Account.encrypt(account.key, password, kdf="scrypt", iterations=scrypt_n)
    try:
        _write_secret(paths.operator_keystore, json.dumps(keystore).encode())
        _write_secret(paths.control_key, os.urandom(32))
        _write_secret(paths.data_key, encode_p2pd_private_key(os.urandom(32)))
    except OSError as exc:
        raise HomeError(f"{paths.keys_dir}: cannot write keys: {exc.strerror}") from None
    return load_public_identity(home)


def read_password(password_file: Path | None, *, confirm: bool = False, prompt: bool | None = None) -> str:
    """The keystore password, from the first of: `password_file`, `$ZOO_NODE_PASSWORD_FILE`, the systemd credential
    `$CREDENTIALS_DIRECTORY/keystore-password`, or a prompt on a terminal. Never from a command-line value.

    A trailing newline in a file is not part of the password.
    """
    candidates: list[Path] = []
    if password_file is not None:
        candidates.append(Path(password_file))
    elif os.environ.get("ZOO_NODE_PASSWORD_FILE"):
        candidates.append(Path(os.environ["ZOO_NODE_PASSWORD_FILE"]))
    elif os.environ.get("CREDENTIALS_DIRECTORY"):
        candidates.append(Path(os.environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME)
    for path in candidates:
        try:
            password = path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise KeystoreError(f"{path}: cannot read the password file: {exc.strerror}") from None
        if not password:
            raise KeystoreError(f"{path}: the password file is empty")
        return password
    if prompt is None:
        prompt = sys.stdin.isatty()
    if not prompt:
        raise KeystoreError(
            "no keystore password: pass --password-file, set ZOO_NODE_PASSWORD_FILE, or run on a terminal"
        )
    password = getpass.getpass("Keystore password: ")
    if confirm and getpass.getpass("Repeat the password: ") != password:
        raise KeystoreError("the two passwords differ")
    if not password:
        raise KeystoreError("the keystore password is empty")
    return password
