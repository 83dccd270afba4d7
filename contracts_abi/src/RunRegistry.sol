// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";

/// @notice What the RunRegistry needs from the contract that holds the runs' reward pools.
interface IRewardPool {
    function fund(uint256 runId) external payable;
}

/// @title RunRegistry
/// @notice Training runs of the Zoo Compute Network: the run spec's hash, its coordinator, the epoch schedule and
/// the reward per epoch. The native coin sent with `createRun` funds the run's pool in the RewardsDistributor.
contract RunRegistry is Ownable {
    using EnumerableSet for EnumerableSet.UintSet;

    enum Status {
        None,
        Active,
        Paused,
        Closed
    }

    struct Run {
        bytes32 specHash;
        address creator;
        address coordinator;
        uint64 epochLength; // seconds
        uint64 startTime; // epoch e (1-based) ends at startTime + e * epochLength
        uint128 rewardPerEpoch; // wei; cumulative rewards after epoch e never exceed e * rewardPerEpoch
        Status status;
    }

    error RewardPoolAlreadySet();
    error RewardPoolNotSet();
    error InvalidRun(string what);
    error UnknownRun(uint256 runId);
    error NotCoordinator(uint256 runId, address caller);
    error BadStatus(uint256 runId, Status status);

    event RunCreated(
        uint256 indexed runId,
        bytes32 indexed specHash,
        address indexed coordinator,
        address creator,
        uint64 epochLength,
        uint128 rewardPerEpoch,
        uint256 funding
    );
    event RunPaused(uint256 indexed runId);
    event RunResumed(uint256 indexed runId);
    event RunClosed(uint256 indexed runId);

    IRewardPool public rewardPool;
    uint256 public runCount;
    mapping(uint256 runId => Run) private _runs;
    EnumerableSet.UintSet private _active;

    constructor() Ownable(msg.sender) {}

    /// @notice Wire the RewardsDistributor that holds the pools; once, by the deployer.
    function setRewardPool(IRewardPool pool) external onlyOwner {
        if (address(rewardPool) != address(0)) revert RewardPoolAlreadySet();
        if (address(pool) == address(0)) revert InvalidRun("reward pool is the zero address");
        rewardPool = pool;
    }

    /// @notice Create a run; `msg.value` funds its reward pool. Run ids start at 1.
    function createRun(bytes32 specHash, address coordinator, uint64 epochLength, uint128 rewardPerEpoch)
        external
        payable
        returns (uint256 runId)
    {
        if (address(rewardPool) == address(0)) revert RewardPoolNotSet();
        if (specHash == bytes32(0)) revert InvalidRun("spec hash is zero");
        if (coordinator == address(0)) revert InvalidRun("coordinator is the zero address");
        if (epochLength == 0) revert InvalidRun("epoch length is zero");
        if (rewardPerEpoch == 0) revert InvalidRun("reward per epoch is zero");
        if (msg.value == 0) revert InvalidRun("no funding sent");
        runId = ++runCount;
        _runs[runId] = Run({
            specHash: specHash,
            creator: msg.sender,
            coordinator: coordinator,
            epochLength: epochLength,
            startTime: uint64(block.timestamp),
            rewardPerEpoch: rewardPerEpoch,
            status: Status.Active
        });
        _active.add(runId);
        emit RunCreated(runId, specHash, coordinator, msg.sender, epochLength, rewardPerEpoch, msg.value);
        rewardPool.fund{value: msg.value}(runId);
    }

    function pauseRun(uint256 runId) external {
        Run storage run = _coordinated(runId);
        if (run.status != Status.Active) revert BadStatus(runId, run.status);
        run.status = Status.Paused;
        _active.remove(runId);
        emit RunPaused(runId);
    }

    function resumeRun(uint256 runId) external {
        Run storage run = _coordinated(runId);
        if (run.status != Status.Paused) revert BadStatus(runId, run.status);
        run.status = Status.Active;
        _active.add(runId);
        emit RunResumed(runId);
    }

    /// @notice Close a run for good: no more roots; claims of what was already posted stay open.
    function closeRun(uint256 runId) external {
        Run storage run = _coordinated(runId);
        if (run.status == Status.Closed) revert BadStatus(runId, run.status);
        run.status = Status.Closed;
        _active.remove(runId);
        emit RunClosed(runId);
    }

    function getRun(uint256 runId) external view returns (Run memory) {
        Run memory run = _runs[runId];
        if (run.status == Status.None) revert UnknownRun(runId);
        return run;
    }

    function coordinatorOf(uint256 runId) external view returns (address) {
        Run storage run = _runs[runId];
        if (run.status == Status.None) revert UnknownRun(runId);
        return run.coordinator;
    }

    /// @notice Ids of the runs whose status is Active (not paused, not closed).
    function activeRunIds() external view returns (uint256[] memory) {
        return _active.values();
    }

    function _coordinated(uint256 runId) private view returns (Run storage run) {
        run = _runs[runId];
        if (run.status == Status.None) revert UnknownRun(runId);
        if (msg.sender != run.coordinator) revert NotCoordinator(runId, msg.sender);
    }
}
