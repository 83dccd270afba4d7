from zoo_node.proto import worker_pb2 as _worker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_NODE_JOINED: _ClassVar[EventKind]
    EVENT_KIND_NODE_GONE: _ClassVar[EventKind]
    EVENT_KIND_NODE_RETURNED: _ClassVar[EventKind]
    EVENT_KIND_RECEIPT: _ClassVar[EventKind]
    EVENT_KIND_EPOCH_SETTLED: _ClassVar[EventKind]
    EVENT_KIND_RUN_STATE: _ClassVar[EventKind]
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_NODE_JOINED: EventKind
EVENT_KIND_NODE_GONE: EventKind
EVENT_KIND_NODE_RETURNED: EventKind
EVENT_KIND_RECEIPT: EventKind
EVENT_KIND_EPOCH_SETTLED: EventKind
EVENT_KIND_RUN_STATE: EventKind

class Point(_message.Message):
    __slots__ = ("unix_time", "value")
    UNIX_TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    unix_time: float
    value: float
    def __init__(self, unix_time: _Optional[float] = ..., value: _Optional[float] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("alive_only",)
    ALIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    alive_only: bool
    def __init__(self, alive_only: _Optional[bool] = ...) -> None: ...

class NodeView(_message.Message):
    __slots__ = ("peer_id", "operator", "data_peer_id", "shard", "health", "alive", "first_seen_unix", "last_seen_unix", "last_seen_age_s", "throughput", "loss", "mfu", "version", "multiaddrs", "receipts", "heartbeats", "throughput_series", "loss_series", "mfu_series")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    DATA_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AGE_S_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    MFU_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MULTIADDRS_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_SERIES_FIELD_NUMBER: _ClassVar[int]
    LOSS_SERIES_FIELD_NUMBER: _ClassVar[int]
    MFU_SERIES_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    operator: str
    data_peer_id: str
    shard: str
    health: _worker_pb2.Health
    alive: bool
    first_seen_unix: float
    last_seen_unix: float
    last_seen_age_s: float
    throughput: float
    loss: float
    mfu: float
    version: str
    multiaddrs: _containers.RepeatedScalarFieldContainer[str]
    receipts: int
    heartbeats: int
    throughput_series: _containers.RepeatedCompositeFieldContainer[Point]
    loss_series: _containers.RepeatedCompositeFieldContainer[Point]
    mfu_series: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, peer_id: _Optional[str] = ..., operator: _Optional[str] = ..., data_peer_id: _Optional[str] = ..., shard: _Optional[str] = ..., health: _Optional[_Union[_worker_pb2.Health, str]] = ..., alive: _Optional[bool] = ..., first_seen_unix: _Optional[float] = ..., last_seen_unix: _Optional[float] = ..., last_seen_age_s: _Optional[float] = ..., throughput: _Optional[float] = ..., loss: _Optional[float] = ..., mfu: _Optional[float] = ..., version: _Optional[str] = ..., multiaddrs: _Optional[_Iterable[str]] = ..., receipts: _Optional[int] = ..., heartbeats: _Optional[int] = ..., throughput_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., loss_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., mfu_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class ListNodesReply(_message.Message):
    __slots__ = ("nodes", "alive", "gone")
    NODES_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    GONE_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeView]
    alive: int
    gone: int
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeView, _Mapping]]] = ..., alive: _Optional[int] = ..., gone: _Optional[int] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("peer_id", "max_points")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    max_points: int
    def __init__(self, peer_id: _Optional[str] = ..., max_points: _Optional[int] = ...) -> None: ...

class ShardView(_message.Message):
    __slots__ = ("shard", "replicas", "throughput", "covered")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_FIELD_NUMBER: _ClassVar[int]
    COVERED_FIELD_NUMBER: _ClassVar[int]
    shard: str
    replicas: _containers.RepeatedScalarFieldContainer[str]
    throughput: float
    covered: bool
    def __init__(self, shard: _Optional[str] = ..., replicas: _Optional[_Iterable[str]] = ..., throughput: _Optional[float] = ..., covered: _Optional[bool] = ...) -> None: ...

class ReceiptCounts(_message.Message):
    __slots__ = ("heard", "pending", "accepted", "rejected")
    HEARD_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    heard: int
    pending: int
    accepted: int
    rejected: int
    def __init__(self, heard: _Optional[int] = ..., pending: _Optional[int] = ..., accepted: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class RunView(_message.Message):
    __slots__ = ("run_id", "name", "spec_hash", "status", "coordinator", "epoch_length_s", "reward_per_epoch_wei", "start_time", "current_epoch", "last_settled_epoch", "next_epoch_end_unix", "nodes_alive", "nodes_gone", "shards", "coverage", "throughput", "tokens", "loss", "mfu", "gpu_hours", "cpu_hours", "receipts", "loss_series", "throughput_series", "mfu_series", "coverage_series", "nodes_series", "coordinator_peer_id", "coordinator_multiaddrs", "settlement_problem", "receipts_duplicate", "tokens_series", "receipts_series", "gpu_hours_series", "cpu_hours_series")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_HASH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    EPOCH_LENGTH_S_FIELD_NUMBER: _ClassVar[int]
    REWARD_PER_EPOCH_WEI_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAST_SETTLED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    NEXT_EPOCH_END_UNIX_FIELD_NUMBER: _ClassVar[int]
    NODES_ALIVE_FIELD_NUMBER: _ClassVar[int]
    NODES_GONE_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    MFU_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    CPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    LOSS_SERIES_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_SERIES_FIELD_NUMBER: _ClassVar[int]
    MFU_SERIES_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_SERIES_FIELD_NUMBER: _ClassVar[int]
    NODES_SERIES_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_MULTIADDRS_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_PROBLEM_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_SERIES_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_SERIES_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_SERIES_FIELD_NUMBER: _ClassVar[int]
    CPU_HOURS_SERIES_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    name: str
    spec_hash: str
    status: str
    coordinator: str
    epoch_length_s: int
    reward_per_epoch_wei: str
    start_time: int
    current_epoch: int
    last_settled_epoch: int
    next_epoch_end_unix: float
    nodes_alive: int
    nodes_gone: int
    shards: _containers.RepeatedCompositeFieldContainer[ShardView]
    coverage: float
    throughput: float
    tokens: int
    loss: float
    mfu: float
    gpu_hours: float
    cpu_hours: float
    receipts: ReceiptCounts
    loss_series: _containers.RepeatedCompositeFieldContainer[Point]
    throughput_series: _containers.RepeatedCompositeFieldContainer[Point]
    mfu_series: _containers.RepeatedCompositeFieldContainer[Point]
    coverage_series: _containers.RepeatedCompositeFieldContainer[Point]
    nodes_series: _containers.RepeatedCompositeFieldContainer[Point]
    coordinator_peer_id: str
    coordinator_multiaddrs: _containers.RepeatedScalarFieldContainer[str]
    settlement_problem: str
    receipts_duplicate: int
    tokens_series: _containers.RepeatedCompositeFieldContainer[Point]
    receipts_series: _containers.RepeatedCompositeFieldContainer[Point]
    gpu_hours_series: _containers.RepeatedCompositeFieldContainer[Point]
    cpu_hours_series: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, run_id: _Optional[int] = ..., name: _Optional[str] = ..., spec_hash: _Optional[str] = ..., status: _Optional[str] = ..., coordinator: _Optional[str] = ..., epoch_length_s: _Optional[int] = ..., reward_per_epoch_wei: _Optional[str] = ..., start_time: _Optional[int] = ..., current_epoch: _Optional[int] = ..., last_settled_epoch: _Optional[int] = ..., next_epoch_end_unix: _Optional[float] = ..., nodes_alive: _Optional[int] = ..., nodes_gone: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ShardView, _Mapping]]] = ..., coverage: _Optional[float] = ..., throughput: _Optional[float] = ..., tokens: _Optional[int] = ..., loss: _Optional[float] = ..., mfu: _Optional[float] = ..., gpu_hours: _Optional[float] = ..., cpu_hours: _Optional[float] = ..., receipts: _Optional[_Union[ReceiptCounts, _Mapping]] = ..., loss_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., throughput_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., mfu_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., coverage_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., nodes_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., coordinator_peer_id: _Optional[str] = ..., coordinator_multiaddrs: _Optional[_Iterable[str]] = ..., settlement_problem: _Optional[str] = ..., receipts_duplicate: _Optional[int] = ..., tokens_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., receipts_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., gpu_hours_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., cpu_hours_series: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("max_points", "since_unix")
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    max_points: int
    since_unix: float
    def __init__(self, max_points: _Optional[int] = ..., since_unix: _Optional[float] = ...) -> None: ...

class GetRunSpecRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunSpecReply(_message.Message):
    __slots__ = ("toml", "spec_hash")
    TOML_FIELD_NUMBER: _ClassVar[int]
    SPEC_HASH_FIELD_NUMBER: _ClassVar[int]
    toml: str
    spec_hash: str
    def __init__(self, toml: _Optional[str] = ..., spec_hash: _Optional[str] = ...) -> None: ...

class ListEpochsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EpochSummary(_message.Message):
    __slots__ = ("epoch", "root", "allocated_wei", "paid_wei", "accepted", "rejected", "settled_at_unix", "claims_uri", "total_verified_flops")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_WEI_FIELD_NUMBER: _ClassVar[int]
    PAID_WEI_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    SETTLED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_URI_FIELD_NUMBER: _ClassVar[int]
    TOTAL_VERIFIED_FLOPS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    root: str
    allocated_wei: str
    paid_wei: str
    accepted: int
    rejected: int
    settled_at_unix: float
    claims_uri: str
    total_verified_flops: str
    def __init__(self, epoch: _Optional[int] = ..., root: _Optional[str] = ..., allocated_wei: _Optional[str] = ..., paid_wei: _Optional[str] = ..., accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., settled_at_unix: _Optional[float] = ..., claims_uri: _Optional[str] = ..., total_verified_flops: _Optional[str] = ...) -> None: ...

class ListEpochsReply(_message.Message):
    __slots__ = ("epochs",)
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    epochs: _containers.RepeatedCompositeFieldContainer[EpochSummary]
    def __init__(self, epochs: _Optional[_Iterable[_Union[EpochSummary, _Mapping]]] = ...) -> None: ...

class GetEpochRequest(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class OwnerReward(_message.Message):
    __slots__ = ("owner", "amount_wei", "cumulative_wei", "verified_flops", "gpu_hours", "cpu_hours", "mfu", "nodes")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_WEI_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_WEI_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FLOPS_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    CPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    MFU_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    owner: str
    amount_wei: str
    cumulative_wei: str
    verified_flops: str
    gpu_hours: float
    cpu_hours: float
    mfu: float
    nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, owner: _Optional[str] = ..., amount_wei: _Optional[str] = ..., cumulative_wei: _Optional[str] = ..., verified_flops: _Optional[str] = ..., gpu_hours: _Optional[float] = ..., cpu_hours: _Optional[float] = ..., mfu: _Optional[float] = ..., nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class RejectedReceipt(_message.Message):
    __slots__ = ("announcer", "shard", "round", "digest", "reason", "detail")
    ANNOUNCER_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    announcer: str
    shard: str
    round: int
    digest: str
    reason: str
    detail: str
    def __init__(self, announcer: _Optional[str] = ..., shard: _Optional[str] = ..., round: _Optional[int] = ..., digest: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class EpochView(_message.Message):
    __slots__ = ("summary", "owners", "rejected", "report_json")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    summary: EpochSummary
    owners: _containers.RepeatedCompositeFieldContainer[OwnerReward]
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedReceipt]
    report_json: str
    def __init__(self, summary: _Optional[_Union[EpochSummary, _Mapping]] = ..., owners: _Optional[_Iterable[_Union[OwnerReward, _Mapping]]] = ..., rejected: _Optional[_Iterable[_Union[RejectedReceipt, _Mapping]]] = ..., report_json: _Optional[str] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("kinds",)
    KINDS_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[EventKind]
    def __init__(self, kinds: _Optional[_Iterable[_Union[EventKind, str]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("unix_time", "kind", "peer_id", "epoch", "detail")
    UNIX_TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    unix_time: float
    kind: EventKind
    peer_id: str
    epoch: int
    detail: str
    def __init__(self, unix_time: _Optional[float] = ..., kind: _Optional[_Union[EventKind, str]] = ..., peer_id: _Optional[str] = ..., epoch: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class SettleEpochRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SettleEpochReply(_message.Message):
    __slots__ = ("settled",)
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    settled: _containers.RepeatedCompositeFieldContainer[EpochSummary]
    def __init__(self, settled: _Optional[_Iterable[_Union[EpochSummary, _Mapping]]] = ...) -> None: ...

class RunStateRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class RunStateReply(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...
