"""Chain commands: `zoo-node register|deregister|withdraw`, `zoo-node rewards show|claim` (operators) and
`zoo-node chain deploy|devnet|status` (run owners and developers). Thin over `zoo_node.chain`."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from zoo_node.errors import ZooError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from zoo_node.chain.client import ChainClient

HomeOption = typer.Option(None, "--home", help="Node home (default: $ZOO_NODE_HOME or ~/.zoo-node).")
PasswordFileOption = typer.Option(
    None,
    "--password-file",
    help="File holding the keystore password (else $ZOO_NODE_PASSWORD_FILE, the systemd credential, or a prompt).",
)
OwnerKeystoreOption = typer.Option(
    None,
    "--owner-keystore",
    help="Keystore v3 file of the owner address (when it is not the operator key); opened with --owner-password-file.",
)
OwnerPasswordOption = typer.Option(None, "--owner-password-file", help="Password file of --owner-keystore.")
JsonOption = typer.Option(False, "--json", help="Print one JSON object instead of text.")
RunOption = typer.Option(None, "--run", help="Only this run (default: every run with a posted root).")
ClaimsOption = typer.Option(
    None, "--claims", help="Claims file (path or URL) to use instead of the one the posted root names."
)

rewards_app = typer.Typer(help="See and claim this node's rewards.", no_args_is_help=True)
chain_app = typer.Typer(
    help="Deploy the contracts, run a local dev chain, show the chain's state.", no_args_is_help=True
)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data))


def _node_context(home: Path | None) -> tuple[Path, Any, Any]:
    from zoo_node.config import load_config, resolve_home
    from zoo_node.identity import load_public_identity

    home_path = resolve_home(home)
    return home_path, load_config(home_path), load_public_identity(home_path)


def _operator(home: Path, password_file: Path | None) -> LocalAccount:
    from zoo_node.identity import load_operator_account, read_password

    return load_operator_account(home, read_password(password_file))


def _owner_account(
    config: Any, operator: LocalAccount, keystore: Path | None, password_file: Path | None
) -> LocalAccount:
    """The account that owns the node: the operator key unless `owner_address` names another one, whose keystore
    must then be given."""
    owner = config.owner_address
    if keystore is None:
        if owner and owner.lower() != operator.address.lower():
            raise ZooError(
                f"the node is owned by {owner} (owner_address), not by the operator key {operator.address}: "
                "pass --owner-keystore and --owner-password-file, or send this from the owner's wallet"
            )
        return operator
    from eth_account import Account

    from zoo_node.errors import KeystoreError
    from zoo_node.identity import read_password

    try:
        data = json.loads(keystore.read_text())
        account = Account.from_key(Account.decrypt(data, read_password(password_file)))
    except OSError as exc:
        raise KeystoreError(f"{keystore}: cannot read the owner keystore: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise KeystoreError(f"{keystore}: cannot open the owner keystore: {exc}") from None
    if owner and owner.lower() != account.address.lower():
        raise ZooError(f"{keystore} holds {account.address}, but owner_address is {owner}")
    return account


def _client(home: Path, config: Any, account: LocalAccount | None = None) -> ChainClient:
    from zoo_node.chain.client import ChainClient

    return ChainClient.from_config(config, home, account)


def register_cmd(
    home: Path | None = HomeOption,
    password_file: Path | None = PasswordFileOption,
    stake: str | None = typer.Option(None, "--stake", help="Stake in coins, e.g. 1.5 (default: the minimum)."),
    multiaddr: list[str] | None = typer.Option(
        None, "--multiaddr", help="A multiaddr to publish (repeatable; `zoo-node join` publishes its own)."
    ),
    gpu_model: str | None = typer.Option(None, "--gpu-model", help="GPU model (default: detected by nvidia-smi)."),
    gpu_count: int | None = typer.Option(None, "--gpu-count", min=0, help="Number of GPUs (default: detected)."),
    gpu_memory_mib: int | None = typer.Option(None, "--gpu-memory-mib", min=0, help="Memory per GPU in MiB."),
    owner_keystore: Path | None = OwnerKeystoreOption,
    owner_password_file: Path | None = OwnerPasswordOption,
    json_out: bool = JsonOption,
) -> None:
    """Register this node on chain (control-plane PeerID, operator address, hardware) with a stake."""
    from zoo_node.chain.node_registry import Hardware
    from zoo_node.chain.operator import detect_hardware, format_coins, parse_coins, register_node

    home_path, config, identity = _node_context(home)
    operator = _operator(home_path, password_file)
    owner = _owner_account(config, operator, owner_keystore, owner_password_file)
    detected = detect_hardware()
    hardware = Hardware(
        gpu_model if gpu_model is not None else detected.gpu_model,
        gpu_count if gpu_count is not None else detected.gpu_count,
        gpu_memory_mib if gpu_memory_mib is not None else detected.gpu_memory_mib,
    )
    result = register_node(
        _client(home_path, config, owner),
        operator=operator.address,
        peer_id=identity.control_peer_id,
        stake=parse_coins(stake, "--stake") if stake is not None else None,
        hardware=hardware,
        multiaddrs=list(multiaddr or []),
    )
    if json_out:
        _echo_json(result.as_dict())
        return
    typer.echo(f"registered node {identity.control_peer_id}")
    typer.echo(f"  node id   0x{result.node_id.hex()}")
    typer.echo(f"  owner     {result.node.owner}")
    typer.echo(f"  operator  {result.node.operator}")
    typer.echo(f"  stake     {format_coins(result.stake)}")
    typer.echo(f"  tx        {result.tx_hash}")


def deregister_cmd(
    home: Path | None = HomeOption, password_file: Path | None = PasswordFileOption, json_out: bool = JsonOption
) -> None:
    """Leave the network: the node stops being active and its stake starts unbonding."""
    from zoo_node.chain.operator import deregister_node

    home_path, config, identity = _node_context(home)
    node = deregister_node(_client(home_path, config, _operator(home_path, password_file)), identity.control_peer_id)
    if json_out:
        _echo_json(node.as_dict())
        return
    typer.echo(
        f"node {identity.control_peer_id} is exiting; `zoo-node withdraw` after unix time {node.unbonding_ends_at}"
    )


def withdraw_cmd(
    home: Path | None = HomeOption,
    password_file: Path | None = PasswordFileOption,
    owner_keystore: Path | None = OwnerKeystoreOption,
    owner_password_file: Path | None = OwnerPasswordOption,
    json_out: bool = JsonOption,
) -> None:
    """Withdraw the stake to the owner once the unbonding period after `deregister` is over."""
    from zoo_node.chain.operator import format_coins, withdraw_stake

    home_path, config, identity = _node_context(home)
    owner = _owner_account(config, _operator(home_path, password_file), owner_keystore, owner_password_file)
    amount = withdraw_stake(_client(home_path, config, owner), identity.control_peer_id)
    if json_out:
        _echo_json({"peer_id": identity.control_peer_id, "owner": owner.address, "withdrawn_wei": str(amount)})
        return
    typer.echo(f"withdrew {format_coins(amount)} coins to {owner.address}")


def _reward_account(config: Any, identity: Any) -> str:
    return config.owner_address or identity.operator_address


@rewards_app.command("show")
def rewards_show(
    home: Path | None = HomeOption,
    run: int | None = RunOption,
    claims: str | None = ClaimsOption,
    json_out: bool = JsonOption,
) -> None:
    """Rewards of this node's owner per run: cumulative, claimed, claimable (no password needed); and per epoch the
    coordinator's figures: verified FLOPs, GPU-hours, MFU, amount, claimed."""
    from zoo_node.chain.operator import format_coins
    from zoo_node.coordinator.report import account_rewards

    home_path, config, identity = _node_context(home)
    account = _reward_account(config, identity)
    client = _client(home_path, config)
    runs = account_rewards(client, account, run_ids=[run] if run is not None else None, claims_location=claims)
    if json_out:
        _echo_json({"account": account, "runs": runs})
        return
    if not runs:
        typer.echo(f"no rewards posted yet for {account}")
    for r in runs:
        line = (
            f"run {r['run_id']} epoch {r['epoch']}: earned {format_coins(int(r['cumulative_wei']))}, "
            f"claimed {format_coins(int(r['claimed_wei']))}, claimable {format_coins(int(r['claimable_wei']))}"
        )
        typer.echo(line + (f" ({r['problem']})" if r["problem"] else ""))
        for e in r["epochs"]:
            if "problem" in e:
                continue
            mfu = "n/a" if e["mfu"] is None else f"{100 * e['mfu']:.1f}%"
            typer.echo(
                f"  epoch {e['epoch']}: {float(e['verified_flops']):.3g} verified FLOPs, {e['gpu_hours']:.2f} GPU-h, "
                f"{e['cpu_hours']:.2f} CPU-h, MFU {mfu}, earned {format_coins(int(e['amount_wei']))}"
                f"{' (claimed)' if e['claimed'] else ''}"
            )


@rewards_app.command("claim")
def rewards_claim(
    home: Path | None = HomeOption,
    password_file: Path | None = PasswordFileOption,
    run: int | None = RunOption,
    claims: str | None = ClaimsOption,
    json_out: bool = JsonOption,
) -> None:
    """Claim every claimable reward; the operator key pays the gas, the coin goes to the owner."""
    from zoo_node.chain.operator import claim_rewards, format_coins, reward_status

    home_path, config, identity = _node_context(home)
    account = _reward_account(config, identity)
    client = _client(home_path, config, _operator(home_path, password_file))
    rewards = reward_status(client, account, run_ids=[run] if run is not None else None, claims_location=claims)
    problems = [r for r in rewards if r.problem]
    if run is not None and problems:
        raise ZooError(f"run {run}: {problems[0].problem}")
    done = claim_rewards(client, account, rewards)
    if json_out:
        _echo_json(
            {
                "account": account,
                "claims": [{"run_id": r.run_id, "paid_wei": str(paid), "tx_hash": tx} for r, paid, tx in done],
                "problems": [{"run_id": r.run_id, "problem": r.problem} for r in problems],
            }
        )
        return
    if not done:
        typer.echo(f"nothing to claim for {account}")
    for r, paid, tx in done:
        typer.echo(f"run {r.run_id}: claimed {format_coins(paid)} coins for {account} ({tx})")
    for r in problems:
        typer.echo(f"run {r.run_id}: skipped ({r.problem})", err=True)


@chain_app.command("deploy")
def chain_deploy(
    rpc: str = typer.Option(..., "--rpc", help="JSON-RPC URL of the chain to deploy to."),
    home: Path | None = HomeOption,
    password_file: Path | None = PasswordFileOption,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where to write the deployment file (default: <home>/deployment.json)."
    ),
    min_stake: str = typer.Option("1", "--min-stake", help="Minimum node stake, in coins."),
    unbonding_period_s: int = typer.Option(7 * 24 * 3600, "--unbonding-period", min=0, help="Unbonding, seconds."),
    json_out: bool = JsonOption,
) -> None:
    """Deploy NodeRegistry, RunRegistry and RewardsDistributor with the home's operator key; write the deployment."""
    from zoo_node.chain.deploy import deploy_contracts
    from zoo_node.chain.operator import parse_coins
    from zoo_node.chain.rpc import RetryPolicy, Rpc, connect_http
    from zoo_node.config import load_config, resolve_home

    home_path = resolve_home(home)
    config = load_config(home_path)
    account = _operator(home_path, password_file)
    chain_rpc = Rpc(
        connect_http(rpc, timeout_s=config.chain.request_timeout_s), rpc, RetryPolicy(config.chain.max_retries)
    )
    deployment = deploy_contracts(
        chain_rpc, account, min_stake_wei=parse_coins(min_stake, "--min-stake"), unbonding_period_s=unbonding_period_s
    )
    path = deployment.write(output or home_path / "deployment.json")
    if json_out:
        _echo_json({"deployment_file": str(path), **deployment.as_dict()})
        return
    typer.echo(f"deployed to chain {deployment.chain_id}; wrote {path}")
    for key in ("node_registry", "run_registry", "rewards_distributor"):
        typer.echo(f"  {key:<20} {getattr(deployment, key)}")


@chain_app.command("devnet")
def chain_devnet(
    accounts: int = typer.Option(10, "--accounts", min=1, help="Funded dev accounts (10,000 coins each)."),
    deployment_file: Path = typer.Option(
        Path("devnet-deployment.json"), "--deployment-file", help="Where to write the deployment file."
    ),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port on 127.0.0.1 (0: a free one)."),
    unbonding_period_s: int = typer.Option(60, "--unbonding-period", min=0, help="Unbonding period, seconds."),
    json_out: bool = JsonOption,
) -> None:
    """Start anvil with the contracts deployed, print the deployment, and run until interrupted (Ctrl-C, SIGTERM)."""
    from web3 import Web3

    from zoo_node.chain.devchain import start_devchain

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    chain = start_devchain(
        accounts=accounts, deployment_file=deployment_file, port=port, unbonding_period_s=unbonding_period_s
    )
    try:
        assert chain.deployment is not None
        info = {
            "rpc_url": chain.rpc_url,
            "pid": chain.pid,
            "deployment_file": str(chain.deployment_file),
            "deployment": chain.deployment.as_dict(),
            "accounts": [{"address": a.address, "private_key": Web3.to_hex(a.key)} for a in chain.accounts],
        }
        if json_out:
            _echo_json(info)
        else:
            typer.echo(f"dev chain at {chain.rpc_url} (chain id {chain.deployment.chain_id}, anvil pid {chain.pid})")
            typer.echo(f"deployment file: {chain.deployment_file}")
            for key in ("node_registry", "run_registry", "rewards_distributor"):
                typer.echo(f"  {key:<20} {getattr(chain.deployment, key)}")
            typer.echo("dev accounts (public test keys, never use them elsewhere):")
            for a in info["accounts"]:
                typer.echo(f"  {a['address']}  {a['private_key']}")
            typer.echo("running; Ctrl-C stops it")
        while not stop.wait(0.5):
            if not chain.running():
                raise ZooError(f"anvil (pid {chain.pid}) exited with code {chain.process.returncode}")
    finally:
        chain.stop()
    if not json_out:
        typer.echo("dev chain stopped")


@chain_app.command("status")
def chain_status(home: Path | None = HomeOption, json_out: bool = JsonOption) -> None:
    """The deployment, active runs and active nodes, as the home's config sees the chain."""
    home_path, config, _ = _node_context(home)
    client = _client(home_path, config)
    runs = client.runs.active_runs()
    nodes = client.nodes.active_nodes()
    if json_out:
        _echo_json(
            {
                "rpc_url": config.chain.rpc_url,
                "block": client.block_number(),
                "deployment": client.deployment.as_dict(),
                "active_runs": [r.as_dict() for r in runs],
                "active_nodes": [n.as_dict() for n in nodes],
            }
        )
        return
    typer.echo(f"chain {client.deployment.chain_id} at {config.chain.rpc_url}, block {client.block_number()}")
    typer.echo(f"active runs: {len(runs)}")
    for r in runs:
        typer.echo(f"  run {r.run_id}: coordinator {r.coordinator}, epochs of {r.epoch_length_s} s")
    typer.echo(f"active nodes: {len(nodes)}")
    for n in nodes:
        typer.echo(f"  {n.peer_id}: operator {n.operator}, {n.hardware.gpu_count} x {n.hardware.gpu_model}")


def register(app: typer.Typer) -> None:
    app.command("register")(register_cmd)
    app.command("deregister")(deregister_cmd)
    app.command("withdraw")(withdraw_cmd)
    app.add_typer(rewards_app, name="rewards")
    app.add_typer(chain_app, name="chain")
