from zoo_node.proto import worker_pb2 as _worker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    NODE_STATE_STARTING: _ClassVar[NodeState]
    NODE_STATE_RUNNING: _ClassVar[NodeState]
    NODE_STATE_DRAINING: _ClassVar[NodeState]
    NODE_STATE_STOPPING: _ClassVar[NodeState]
NODE_STATE_UNSPECIFIED: NodeState
NODE_STATE_STARTING: NodeState
NODE_STATE_RUNNING: NodeState
NODE_STATE_DRAINING: NodeState
NODE_STATE_STOPPING: NodeState

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("peer_id", "data_peer_id", "operator", "version", "run_id", "listen_multiaddrs", "uptime_s", "state", "metrics_url", "network")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LISTEN_MULTIADDRS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    METRICS_URL_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    data_peer_id: str
    operator: str
    version: str
    run_id: int
    listen_multiaddrs: _containers.RepeatedScalarFieldContainer[str]
    uptime_s: float
    state: NodeState
    metrics_url: str
    network: str
    def __init__(self, peer_id: _Optional[str] = ..., data_peer_id: _Optional[str] = ..., operator: _Optional[str] = ..., version: _Optional[str] = ..., run_id: _Optional[int] = ..., listen_multiaddrs: _Optional[_Iterable[str]] = ..., uptime_s: _Optional[float] = ..., state: _Optional[_Union[NodeState, str]] = ..., metrics_url: _Optional[str] = ..., network: _Optional[str] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("health", "detail", "pid", "incarnation", "restarts", "shard", "last_report_age_s", "progress", "resources", "next_restart_in_s", "last_exit_code")
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_RESTART_IN_S_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    health: _worker_pb2.Health
    detail: str
    pid: int
    incarnation: int
    restarts: int
    shard: str
    last_report_age_s: float
    progress: _worker_pb2.Progress
    resources: _worker_pb2.WorkerResources
    next_restart_in_s: float
    last_exit_code: int
    def __init__(self, health: _Optional[_Union[_worker_pb2.Health, str]] = ..., detail: _Optional[str] = ..., pid: _Optional[int] = ..., incarnation: _Optional[int] = ..., restarts: _Optional[int] = ..., shard: _Optional[str] = ..., last_report_age_s: _Optional[float] = ..., progress: _Optional[_Union[_worker_pb2.Progress, _Mapping]] = ..., resources: _Optional[_Union[_worker_pb2.WorkerResources, _Mapping]] = ..., next_restart_in_s: _Optional[float] = ..., last_exit_code: _Optional[int] = ...) -> None: ...

class PeerInfo(_message.Message):
    __slots__ = ("peer_id", "operator", "alive", "last_seen_age_s", "shard", "throughput", "health", "data_peer_id", "version", "multiaddrs", "connected")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AGE_S_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    DATA_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MULTIADDRS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    operator: str
    alive: bool
    last_seen_age_s: float
    shard: str
    throughput: float
    health: _worker_pb2.Health
    data_peer_id: str
    version: str
    multiaddrs: _containers.RepeatedScalarFieldContainer[str]
    connected: bool
    def __init__(self, peer_id: _Optional[str] = ..., operator: _Optional[str] = ..., alive: _Optional[bool] = ..., last_seen_age_s: _Optional[float] = ..., shard: _Optional[str] = ..., throughput: _Optional[float] = ..., health: _Optional[_Union[_worker_pb2.Health, str]] = ..., data_peer_id: _Optional[str] = ..., version: _Optional[str] = ..., multiaddrs: _Optional[_Iterable[str]] = ..., connected: _Optional[bool] = ...) -> None: ...

class JournalInfo(_message.Message):
    __slots__ = ("receipts", "unsettled", "ungossiped", "path")
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    UNSETTLED_FIELD_NUMBER: _ClassVar[int]
    UNGOSSIPED_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    receipts: int
    unsettled: int
    ungossiped: int
    path: str
    def __init__(self, receipts: _Optional[int] = ..., unsettled: _Optional[int] = ..., ungossiped: _Optional[int] = ..., path: _Optional[str] = ...) -> None: ...

class GossipInfo(_message.Message):
    __slots__ = ("messages_in", "messages_out", "dropped", "connected_peers")
    class MessagesInEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class MessagesOutEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class DroppedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MESSAGES_IN_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_OUT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_PEERS_FIELD_NUMBER: _ClassVar[int]
    messages_in: _containers.ScalarMap[str, int]
    messages_out: _containers.ScalarMap[str, int]
    dropped: _containers.ScalarMap[str, int]
    connected_peers: int
    def __init__(self, messages_in: _Optional[_Mapping[str, int]] = ..., messages_out: _Optional[_Mapping[str, int]] = ..., dropped: _Optional[_Mapping[str, int]] = ..., connected_peers: _Optional[int] = ...) -> None: ...

class EpochReward(_message.Message):
    __slots__ = ("epoch", "verified_flops", "gpu_hours", "cpu_hours", "mfu", "amount_wei", "claimed", "problem")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FLOPS_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    CPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    MFU_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_WEI_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    verified_flops: str
    gpu_hours: float
    cpu_hours: float
    mfu: float
    amount_wei: str
    claimed: bool
    problem: str
    def __init__(self, epoch: _Optional[int] = ..., verified_flops: _Optional[str] = ..., gpu_hours: _Optional[float] = ..., cpu_hours: _Optional[float] = ..., mfu: _Optional[float] = ..., amount_wei: _Optional[str] = ..., claimed: _Optional[bool] = ..., problem: _Optional[str] = ...) -> None: ...

class RewardsInfo(_message.Message):
    __slots__ = ("account", "run_id", "epoch", "earned_wei", "claimed_wei", "claimable_wei", "epochs", "age_s", "problem")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EARNED_WEI_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_WEI_FIELD_NUMBER: _ClassVar[int]
    CLAIMABLE_WEI_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    account: str
    run_id: int
    epoch: int
    earned_wei: str
    claimed_wei: str
    claimable_wei: str
    epochs: _containers.RepeatedCompositeFieldContainer[EpochReward]
    age_s: float
    problem: str
    def __init__(self, account: _Optional[str] = ..., run_id: _Optional[int] = ..., epoch: _Optional[int] = ..., earned_wei: _Optional[str] = ..., claimed_wei: _Optional[str] = ..., claimable_wei: _Optional[str] = ..., epochs: _Optional[_Iterable[_Union[EpochReward, _Mapping]]] = ..., age_s: _Optional[float] = ..., problem: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node", "worker", "peers", "journal", "gossip", "rewards")
    NODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    GOSSIP_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    node: NodeInfo
    worker: WorkerInfo
    peers: _containers.RepeatedCompositeFieldContainer[PeerInfo]
    journal: JournalInfo
    gossip: GossipInfo
    rewards: RewardsInfo
    def __init__(self, node: _Optional[_Union[NodeInfo, _Mapping]] = ..., worker: _Optional[_Union[WorkerInfo, _Mapping]] = ..., peers: _Optional[_Iterable[_Union[PeerInfo, _Mapping]]] = ..., journal: _Optional[_Union[JournalInfo, _Mapping]] = ..., gossip: _Optional[_Union[GossipInfo, _Mapping]] = ..., rewards: _Optional[_Union[RewardsInfo, _Mapping]] = ...) -> None: ...

class WatchMetricsRequest(_message.Message):
    __slots__ = ("interval_s",)
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    interval_s: float
    def __init__(self, interval_s: _Optional[float] = ...) -> None: ...

class MetricsSnapshot(_message.Message):
    __slots__ = ("unix_time", "peers_alive", "peers_gone", "messages_in", "messages_out", "dropped", "worker_restarts", "receipts", "receipts_unsettled", "steps", "tokens", "tokens_per_s", "mfu", "worker_health")
    class DroppedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    UNIX_TIME_FIELD_NUMBER: _ClassVar[int]
    PEERS_ALIVE_FIELD_NUMBER: _ClassVar[int]
    PEERS_GONE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_IN_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_OUT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    WORKER_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_UNSETTLED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    MFU_FIELD_NUMBER: _ClassVar[int]
    WORKER_HEALTH_FIELD_NUMBER: _ClassVar[int]
    unix_time: float
    peers_alive: int
    peers_gone: int
    messages_in: int
    messages_out: int
    dropped: _containers.ScalarMap[str, int]
    worker_restarts: int
    receipts: int
    receipts_unsettled: int
    steps: int
    tokens: int
    tokens_per_s: float
    mfu: float
    worker_health: _worker_pb2.Health
    def __init__(self, unix_time: _Optional[float] = ..., peers_alive: _Optional[int] = ..., peers_gone: _Optional[int] = ..., messages_in: _Optional[int] = ..., messages_out: _Optional[int] = ..., dropped: _Optional[_Mapping[str, int]] = ..., worker_restarts: _Optional[int] = ..., receipts: _Optional[int] = ..., receipts_unsettled: _Optional[int] = ..., steps: _Optional[int] = ..., tokens: _Optional[int] = ..., tokens_per_s: _Optional[float] = ..., mfu: _Optional[float] = ..., worker_health: _Optional[_Union[_worker_pb2.Health, str]] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class DrainReply(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: NodeState
    def __init__(self, state: _Optional[_Union[NodeState, str]] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ShutdownReply(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: NodeState
    def __init__(self, state: _Optional[_Union[NodeState, str]] = ...) -> None: ...
