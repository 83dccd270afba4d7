from zoo_node.proto import worker_pb2 as _worker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GossipEnvelope(_message.Message):
    __slots__ = ("format", "run_id", "node_peer_id", "sent_at_ms", "heartbeat", "receipt")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    format: int
    run_id: int
    node_peer_id: str
    sent_at_ms: int
    heartbeat: Heartbeat
    receipt: ReceiptAnnouncement
    def __init__(self, format: _Optional[int] = ..., run_id: _Optional[int] = ..., node_peer_id: _Optional[str] = ..., sent_at_ms: _Optional[int] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., receipt: _Optional[_Union[ReceiptAnnouncement, _Mapping]] = ...) -> None: ...

class WorkerBinding(_message.Message):
    __slots__ = ("run_id", "control_peer_id", "data_peer_id", "issued_at_ms")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CONTROL_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    control_peer_id: str
    data_peer_id: str
    issued_at_ms: int
    def __init__(self, run_id: _Optional[int] = ..., control_peer_id: _Optional[str] = ..., data_peer_id: _Optional[str] = ..., issued_at_ms: _Optional[int] = ...) -> None: ...

class SignedWorkerBinding(_message.Message):
    __slots__ = ("binding", "signature")
    BINDING_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    binding: bytes
    signature: bytes
    def __init__(self, binding: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("operator", "shard", "throughput", "health", "worker", "version", "multiaddrs", "data_multiaddrs", "interval_ms", "progress", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MULTIADDRS_FIELD_NUMBER: _ClassVar[int]
    DATA_MULTIADDRS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    operator: str
    shard: str
    throughput: float
    health: _worker_pb2.Health
    worker: SignedWorkerBinding
    version: str
    multiaddrs: _containers.RepeatedScalarFieldContainer[str]
    data_multiaddrs: _containers.RepeatedScalarFieldContainer[str]
    interval_ms: int
    progress: _worker_pb2.Progress
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, operator: _Optional[str] = ..., shard: _Optional[str] = ..., throughput: _Optional[float] = ..., health: _Optional[_Union[_worker_pb2.Health, str]] = ..., worker: _Optional[_Union[SignedWorkerBinding, _Mapping]] = ..., version: _Optional[str] = ..., multiaddrs: _Optional[_Iterable[str]] = ..., data_multiaddrs: _Optional[_Iterable[str]] = ..., interval_ms: _Optional[int] = ..., progress: _Optional[_Union[_worker_pb2.Progress, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ReceiptAnnouncement(_message.Message):
    __slots__ = ("receipt", "journal_id")
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_ID_FIELD_NUMBER: _ClassVar[int]
    receipt: _worker_pb2.Receipt
    journal_id: int
    def __init__(self, receipt: _Optional[_Union[_worker_pb2.Receipt, _Mapping]] = ..., journal_id: _Optional[int] = ...) -> None: ...
