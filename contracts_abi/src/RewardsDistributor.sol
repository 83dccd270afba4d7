// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {RunRegistry} from "./RunRegistry.sol";

/// @title RewardsDistributor
/// @notice Holds each run's reward pool. Per run, the coordinator posts one cumulative Merkle root per epoch; an
/// owner claims its `cumulativeAmount` with a proof and receives the difference to what it already claimed.
/// Leaves are OpenZeppelin's standard ones: keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount)))),
/// proofs use sorted-pair hashing (MerkleProof).
/// State changes always precede the transfer (checks-effects-interactions), so a re-entrant call finds nothing
/// left to take; no reentrancy lock is needed, which keeps a claim cheap.
contract RewardsDistributor {
    struct Pool {
        bytes32 root; // cumulative root of the latest posted epoch
        uint64 epoch; // latest posted epoch (0: none yet)
        uint128 allocated; // total of all leaves of the latest root (what the run has promised)
        uint128 balance; // coin held for the run and not yet paid out
        uint128 unallocated; // coin not promised by any root (refundable to the creator once the run is closed)
    }

    error OnlyRunRegistry();
    error UnknownRun(uint256 runId);
    error NotCoordinator(uint256 runId, address caller);
    error RunNotActive(uint256 runId);
    error RunNotClosed(uint256 runId);
    error NotRunCreator(uint256 runId, address caller);
    error EpochNotIncreasing(uint64 epoch, uint64 latest);
    error EpochNotEnded(uint64 epoch, uint64 endsAt);
    error AllocationDecreased(uint128 allocated, uint128 previous);
    error AllocationExceedsSchedule(uint128 allocated, uint256 maximum);
    error AllocationExceedsFunds(uint128 allocated, uint256 funded);
    error InvalidProof();
    error NothingToClaim(uint256 cumulativeAmount, uint256 alreadyClaimed);
    error PoolExhausted(uint256 amount, uint128 balance);
    error TransferFailed(address to, uint256 amount);

    event Funded(uint256 indexed runId, address indexed from, uint256 amount);
    event RootPosted(uint256 indexed runId, uint64 indexed epoch, bytes32 root, uint128 allocated, string proofsURI);
    event Claimed(uint256 indexed runId, address indexed account, uint256 amount, uint256 cumulativeAmount);
    event Reclaimed(uint256 indexed runId, address indexed to, uint256 amount);

    RunRegistry public immutable runRegistry;
    mapping(uint256 runId => Pool) private _pools;
    mapping(uint256 runId => mapping(address account => uint256)) public claimed;

    constructor(RunRegistry registry) {
        runRegistry = registry;
    }

    /// @notice Add coin to a run's pool (the RunRegistry calls this at creation; anyone may top up later).
    function fund(uint256 runId) external payable {
        if (msg.sender != address(runRegistry)) {
            runRegistry.getRun(runId); // reverts UnknownRun
        }
        Pool storage pool = _pools[runId];
        pool.balance += uint128(msg.value);
        pool.unallocated += uint128(msg.value);
        emit Funded(runId, msg.sender, msg.value);
    }

    /// @notice Post the cumulative root of `epoch` (strictly increasing, only once it has ended). `allocated` is
    /// the sum of all leaves; it may not decrease, exceed `epoch * rewardPerEpoch`, nor exceed what the pool holds.
    /// Gas does not depend on the number of leaves; `proofsURI` (emitted only) says where the leaves and proofs are.
    function postRoot(uint256 runId, uint64 epoch, bytes32 root, uint128 allocated, string calldata proofsURI)
        external
    {
        RunRegistry.Run memory run = runRegistry.getRun(runId);
        if (msg.sender != run.coordinator) revert NotCoordinator(runId, msg.sender);
        if (run.status != RunRegistry.Status.Active) revert RunNotActive(runId);
        Pool storage pool = _pools[runId];
        if (epoch <= pool.epoch) revert EpochNotIncreasing(epoch, pool.epoch);
        uint64 endsAt = run.startTime + epoch * run.epochLength;
        if (block.timestamp < endsAt) revert EpochNotEnded(epoch, endsAt);
        uint128 previous = pool.allocated;
        if (allocated < previous) revert AllocationDecreased(allocated, previous);
        uint256 maximum = uint256(epoch) * run.rewardPerEpoch;
        if (allocated > maximum) revert AllocationExceedsSchedule(allocated, maximum);
        uint128 added = allocated - previous;
        if (added > pool.unallocated) revert AllocationExceedsFunds(allocated, uint256(previous) + pool.unallocated);
        pool.unallocated -= added;
        pool.root = root;
        pool.epoch = epoch;
        pool.allocated = allocated;
        emit RootPosted(runId, epoch, root, allocated, proofsURI);
    }

    /// @notice Pay `account` the difference between `cumulativeAmount` (proven against the run's latest root) and
    /// what it already claimed. Anyone may submit; the coin always goes to `account`.
    function claim(uint256 runId, address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        external
    {
        Pool storage pool = _pools[runId];
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, pool.root, leaf)) revert InvalidProof();
        uint256 already = claimed[runId][account];
        if (cumulativeAmount <= already) revert NothingToClaim(cumulativeAmount, already);
        uint256 amount = cumulativeAmount - already;
        // A root whose leaves add up to more than it declared can never drain other runs' pools.
        if (amount > pool.balance) revert PoolExhausted(amount, pool.balance);
        claimed[runId][account] = cumulativeAmount;
        pool.balance -= uint128(amount);
        emit Claimed(runId, account, amount, cumulativeAmount);
        (bool ok,) = account.call{value: amount}("");
        if (!ok) revert TransferFailed(account, amount);
    }

    /// @notice After a run is closed, its creator takes back the coin that no root promised.
    function reclaim(uint256 runId) external returns (uint256 amount) {
        RunRegistry.Run memory run = runRegistry.getRun(runId);
        if (run.status != RunRegistry.Status.Closed) revert RunNotClosed(runId);
        if (msg.sender != run.creator) revert NotRunCreator(runId, msg.sender);
        Pool storage pool = _pools[runId];
        amount = pool.unallocated;
        pool.unallocated = 0;
        pool.balance -= uint128(amount);
        emit Reclaimed(runId, msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    function getPool(uint256 runId) external view returns (Pool memory) {
        return _pools[runId];
    }
}
