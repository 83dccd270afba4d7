// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {RunRegistry} from "./RunRegistry.sol";

/// @title NodeRegistry
/// @notice Nodes of the Zoo Compute Network. A node is keyed by its control-plane PeerID (nodeId =
/// keccak256(bytes(peerId))). Its owner (a cold address) stakes the native coin; its operator (the daemon's hot
/// address) sends heartbeats. Exiting starts an unbonding period after which the owner withdraws the stake; until
/// then a run's coordinator can still slash it, with the hash of the evidence. A node is only answerable to the
/// coordinators of runs its operator joined (`joinRun`): anyone can create a run, so without that consent anyone
/// could slash anyone.
contract NodeRegistry is Ownable {
    using EnumerableSet for EnumerableSet.Bytes32Set;

    enum Status {
        None,
        Active,
        Exiting,
        Withdrawn
    }

    struct Hardware {
        string gpuModel; // e.g. "NVIDIA H100 80GB HBM3", or "cpu"
        uint16 gpuCount;
        uint32 gpuMemoryMiB; // per GPU
    }

    struct Node {
        address owner;
        address operator;
        Status status;
        uint64 registeredAt;
        uint64 lastHeartbeat;
        uint64 unbondingEndsAt; // set by requestExit
        uint256 stake;
        string peerId;
        string metadataURI; // where the node's multiaddrs are (see docs/chain.md)
        Hardware hardware;
    }

    error StakeTooLow(uint256 sent, uint256 minimum);
    error AlreadyRegistered(bytes32 nodeId);
    error NodeOwnedByAnother(bytes32 nodeId, address owner);
    error OperatorInUse(address operator, bytes32 nodeId);
    error InvalidNode(string what);
    error UnknownNode(bytes32 nodeId);
    error NotNodeOwner(bytes32 nodeId, address caller);
    error NotNodeOperator(bytes32 nodeId, address caller);
    error NotActive(bytes32 nodeId, Status status);
    error NotExiting(bytes32 nodeId, Status status);
    error StillUnbonding(bytes32 nodeId, uint64 unbondingEndsAt);
    error NotCoordinator(uint256 runId, address caller);
    error SlashTooLarge(uint256 amount, uint256 stake);
    error EvidenceUsed(bytes32 nodeId, bytes32 evidenceHash);
    error NotInRun(bytes32 nodeId, uint256 runId);
    error TransferFailed(address to, uint256 amount);

    event NodeRegistered(
        bytes32 indexed nodeId, address indexed owner, address indexed operator, string peerId, uint256 stake
    );
    event MetadataUpdated(bytes32 indexed nodeId, string metadataURI);
    event Heartbeat(bytes32 indexed nodeId, uint64 timestamp);
    event RunJoined(bytes32 indexed nodeId, uint256 indexed runId);
    event ExitRequested(bytes32 indexed nodeId, uint64 unbondingEndsAt);
    event StakeWithdrawn(bytes32 indexed nodeId, address indexed owner, uint256 amount);
    event Slashed(
        bytes32 indexed nodeId, uint256 indexed runId, address indexed coordinator, uint256 amount, bytes32 evidenceHash
    );
    event SlashedSwept(address indexed to, uint256 amount);

    uint256 public constant MAX_STRING_BYTES = 1024;

    RunRegistry public immutable runRegistry;
    uint256 public immutable minStake;
    uint64 public immutable unbondingPeriod; // seconds
    uint256 public slashedBalance; // slashed stake, held until the registry owner sweeps it to a treasury

    mapping(bytes32 nodeId => Node) private _nodes;
    mapping(address operator => bytes32 nodeId) public nodeOfOperator;
    mapping(bytes32 key => bool) private _evidenceUsed;
    mapping(bytes32 nodeId => mapping(uint256 runId => bool)) public joinedRun;
    EnumerableSet.Bytes32Set private _active;

    constructor(RunRegistry registry, uint256 minStake_, uint64 unbondingPeriod_) Ownable(msg.sender) {
        runRegistry = registry;
        minStake = minStake_;
        unbondingPeriod = unbondingPeriod_;
    }

    /// @notice The id of the node with this control-plane PeerID.
    function nodeIdOf(string calldata peerId) public pure returns (bytes32) {
        return keccak256(bytes(peerId));
    }

    /// @notice Register (or, after a withdrawal, re-register) a node owned by `msg.sender`, staking `msg.value`.
    function register(
        address operator,
        string calldata peerId,
        Hardware calldata hardware,
        string calldata metadataURI
    ) external payable returns (bytes32 nodeId) {
        if (msg.value < minStake) revert StakeTooLow(msg.value, minStake);
        if (operator == address(0)) revert InvalidNode("operator is the zero address");
        if (bytes(peerId).length == 0 || bytes(peerId).length > 128) revert InvalidNode("peerId must have 1-128 bytes");
        if (bytes(metadataURI).length > MAX_STRING_BYTES) revert InvalidNode("metadataURI is too long");
        if (bytes(hardware.gpuModel).length > 128) revert InvalidNode("gpuModel is too long");
        nodeId = keccak256(bytes(peerId));
        Node storage node = _nodes[nodeId];
        if (node.status != Status.None) {
            if (node.owner != msg.sender) revert NodeOwnedByAnother(nodeId, node.owner);
            if (node.status != Status.Withdrawn) revert AlreadyRegistered(nodeId);
        }
        bytes32 operatorNode = nodeOfOperator[operator];
        if (operatorNode != bytes32(0) && operatorNode != nodeId) revert OperatorInUse(operator, operatorNode);

        node.owner = msg.sender;
        node.operator = operator;
        node.status = Status.Active;
        node.registeredAt = uint64(block.timestamp);
        node.lastHeartbeat = uint64(block.timestamp);
        node.unbondingEndsAt = 0;
        node.stake = msg.value;
        node.peerId = peerId;
        node.metadataURI = metadataURI;
        node.hardware = hardware;
        nodeOfOperator[operator] = nodeId;
        _active.add(nodeId);
        emit NodeRegistered(nodeId, msg.sender, operator, peerId, msg.value);
        emit MetadataUpdated(nodeId, metadataURI);
    }

    /// @notice Publish new multiaddrs (owner or operator).
    function updateMetadata(bytes32 nodeId, string calldata metadataURI) external {
        Node storage node = _known(nodeId);
        if (msg.sender != node.operator && msg.sender != node.owner) revert NotNodeOperator(nodeId, msg.sender);
        if (node.status != Status.Active) revert NotActive(nodeId, node.status);
        if (bytes(metadataURI).length > MAX_STRING_BYTES) revert InvalidNode("metadataURI is too long");
        node.metadataURI = metadataURI;
        emit MetadataUpdated(nodeId, metadataURI);
    }

    /// @notice Liveness signal from the node's operator (hot) address.
    function heartbeat(bytes32 nodeId) external {
        Node storage node = _known(nodeId);
        if (msg.sender != node.operator) revert NotNodeOperator(nodeId, msg.sender);
        if (node.status != Status.Active) revert NotActive(nodeId, node.status);
        node.lastHeartbeat = uint64(block.timestamp);
        emit Heartbeat(nodeId, uint64(block.timestamp));
    }

    /// @notice Join run `runId` (operator): its coordinator may from now on slash this node.
    function joinRun(bytes32 nodeId, uint256 runId) external {
        Node storage node = _known(nodeId);
        if (msg.sender != node.operator) revert NotNodeOperator(nodeId, msg.sender);
        if (node.status != Status.Active) revert NotActive(nodeId, node.status);
        runRegistry.coordinatorOf(runId); // reverts UnknownRun
        if (!joinedRun[nodeId][runId]) {
            joinedRun[nodeId][runId] = true;
            emit RunJoined(nodeId, runId);
        }
    }

    /// @notice Leave the network: the node stops being active and its stake unbonds (owner or operator).
    function requestExit(bytes32 nodeId) external {
        Node storage node = _known(nodeId);
        if (msg.sender != node.owner && msg.sender != node.operator) revert NotNodeOwner(nodeId, msg.sender);
        if (node.status != Status.Active) revert NotActive(nodeId, node.status);
        uint64 endsAt = uint64(block.timestamp) + unbondingPeriod;
        node.status = Status.Exiting;
        node.unbondingEndsAt = endsAt;
        _active.remove(nodeId);
        emit ExitRequested(nodeId, endsAt);
    }

    /// @notice After the unbonding period, pay what is left of the stake to the owner.
    function withdraw(bytes32 nodeId) external returns (uint256 amount) {
        Node storage node = _known(nodeId);
        if (msg.sender != node.owner) revert NotNodeOwner(nodeId, msg.sender);
        if (node.status != Status.Exiting) revert NotExiting(nodeId, node.status);
        if (block.timestamp < node.unbondingEndsAt) revert StillUnbonding(nodeId, node.unbondingEndsAt);
        amount = node.stake;
        node.stake = 0;
        node.status = Status.Withdrawn;
        delete nodeOfOperator[node.operator];
        emit StakeWithdrawn(nodeId, msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    /// @notice Take `amount` of a node's stake, by the coordinator of a run the node joined, citing the hash of the evidence.
    /// An active node left below `minStake` stops counting as active until it exits.
    function slash(bytes32 nodeId, uint256 runId, uint256 amount, bytes32 evidenceHash) external {
        if (msg.sender != runRegistry.coordinatorOf(runId)) revert NotCoordinator(runId, msg.sender);
        Node storage node = _known(nodeId);
        if (!joinedRun[nodeId][runId]) revert NotInRun(nodeId, runId);
        if (node.status != Status.Active && node.status != Status.Exiting) revert NotActive(nodeId, node.status);
        if (amount == 0 || amount > node.stake) revert SlashTooLarge(amount, node.stake);
        bytes32 key = keccak256(abi.encode(nodeId, evidenceHash));
        if (_evidenceUsed[key]) revert EvidenceUsed(nodeId, evidenceHash);
        _evidenceUsed[key] = true;
        node.stake -= amount;
        slashedBalance += amount;
        if (node.stake < minStake) _active.remove(nodeId);
        emit Slashed(nodeId, runId, msg.sender, amount, evidenceHash);
    }

    /// @notice Move the slashed stake to a treasury (registry owner only).
    function sweepSlashed(address to) external onlyOwner {
        uint256 amount = slashedBalance;
        slashedBalance = 0;
        emit SlashedSwept(to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }

    function getNode(bytes32 nodeId) external view returns (Node memory) {
        return _known(nodeId);
    }

    /// @notice Several nodes at once (for listing without one call per node); unknown ids revert.
    function getNodes(bytes32[] calldata nodeIds) external view returns (Node[] memory nodes) {
        nodes = new Node[](nodeIds.length);
        for (uint256 i = 0; i < nodeIds.length; ++i) {
            nodes[i] = _known(nodeIds[i]);
        }
    }

    function isActive(bytes32 nodeId) external view returns (bool) {
        return _active.contains(nodeId);
    }

    function activeNodeCount() external view returns (uint256) {
        return _active.length();
    }

    /// @notice Up to `limit` active node ids from position `offset` (the order changes as nodes leave).
    function activeNodeIds(uint256 offset, uint256 limit) external view returns (bytes32[] memory ids) {
        uint256 total = _active.length();
        if (offset >= total) return new bytes32[](0);
        uint256 end = offset + limit > total ? total : offset + limit;
        ids = new bytes32[](end - offset);
        for (uint256 i = offset; i < end; ++i) {
            ids[i - offset] = _active.at(i);
        }
    }

    function _known(bytes32 nodeId) private view returns (Node storage node) {
        node = _nodes[nodeId];
        if (node.status == Status.None) revert UnknownNode(nodeId);
    }
}
