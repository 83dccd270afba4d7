from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Health(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_UNSPECIFIED: _ClassVar[Health]
    HEALTH_STARTING: _ClassVar[Health]
    HEALTH_SERVING: _ClassVar[Health]
    HEALTH_DRAINING: _ClassVar[Health]
    HEALTH_DEGRADED: _ClassVar[Health]
    HEALTH_STOPPED: _ClassVar[Health]
HEALTH_UNSPECIFIED: Health
HEALTH_STARTING: Health
HEALTH_SERVING: Health
HEALTH_DRAINING: Health
HEALTH_DEGRADED: Health
HEALTH_STOPPED: Health

class Assignment(_message.Message):
    __slots__ = ("run_id", "shard", "incarnation", "device", "temp_dir", "data_bootstrap", "spec_hash")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    TEMP_DIR_FIELD_NUMBER: _ClassVar[int]
    DATA_BOOTSTRAP_FIELD_NUMBER: _ClassVar[int]
    SPEC_HASH_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    shard: str
    incarnation: int
    device: str
    temp_dir: str
    data_bootstrap: _containers.RepeatedScalarFieldContainer[str]
    spec_hash: bytes
    def __init__(self, run_id: _Optional[int] = ..., shard: _Optional[str] = ..., incarnation: _Optional[int] = ..., device: _Optional[str] = ..., temp_dir: _Optional[str] = ..., data_bootstrap: _Optional[_Iterable[str]] = ..., spec_hash: _Optional[bytes] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("incarnation", "pid", "data_peer_id", "version")
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    DATA_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    incarnation: int
    pid: int
    data_peer_id: str
    version: str
    def __init__(self, incarnation: _Optional[int] = ..., pid: _Optional[int] = ..., data_peer_id: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("assignment", "report_interval_s")
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    assignment: Assignment
    report_interval_s: float
    def __init__(self, assignment: _Optional[_Union[Assignment, _Mapping]] = ..., report_interval_s: _Optional[float] = ...) -> None: ...

class WorkerResources(_message.Message):
    __slots__ = ("child_pids", "socket_paths", "data_multiaddrs")
    CHILD_PIDS_FIELD_NUMBER: _ClassVar[int]
    SOCKET_PATHS_FIELD_NUMBER: _ClassVar[int]
    DATA_MULTIADDRS_FIELD_NUMBER: _ClassVar[int]
    child_pids: _containers.RepeatedScalarFieldContainer[int]
    socket_paths: _containers.RepeatedScalarFieldContainer[str]
    data_multiaddrs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, child_pids: _Optional[_Iterable[int]] = ..., socket_paths: _Optional[_Iterable[str]] = ..., data_multiaddrs: _Optional[_Iterable[str]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("steps", "tokens", "flops", "tokens_per_s", "mfu")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    FLOPS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    MFU_FIELD_NUMBER: _ClassVar[int]
    steps: int
    tokens: int
    flops: float
    tokens_per_s: float
    mfu: float
    def __init__(self, steps: _Optional[int] = ..., tokens: _Optional[int] = ..., flops: _Optional[float] = ..., tokens_per_s: _Optional[float] = ..., mfu: _Optional[float] = ...) -> None: ...

class WorkerReport(_message.Message):
    __slots__ = ("incarnation", "health", "detail", "progress", "metrics", "resources", "shard")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    incarnation: int
    health: Health
    detail: str
    progress: Progress
    metrics: _containers.ScalarMap[str, float]
    resources: WorkerResources
    shard: str
    def __init__(self, incarnation: _Optional[int] = ..., health: _Optional[_Union[Health, str]] = ..., detail: _Optional[str] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., resources: _Optional[_Union[WorkerResources, _Mapping]] = ..., shard: _Optional[str] = ...) -> None: ...

class ReportReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReceiptMember(_message.Message):
    __slots__ = ("peer_id", "samples")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    samples: int
    def __init__(self, peer_id: _Optional[str] = ..., samples: _Optional[int] = ...) -> None: ...

class CoSignature(_message.Message):
    __slots__ = ("peer_id", "signature")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    signature: bytes
    def __init__(self, peer_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("run_id", "shard", "round", "members", "tokens", "flops", "seconds", "device", "cosignatures")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    FLOPS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    shard: str
    round: int
    members: _containers.RepeatedCompositeFieldContainer[ReceiptMember]
    tokens: int
    flops: float
    seconds: float
    device: str
    cosignatures: _containers.RepeatedCompositeFieldContainer[CoSignature]
    def __init__(self, run_id: _Optional[int] = ..., shard: _Optional[str] = ..., round: _Optional[int] = ..., members: _Optional[_Iterable[_Union[ReceiptMember, _Mapping]]] = ..., tokens: _Optional[int] = ..., flops: _Optional[float] = ..., seconds: _Optional[float] = ..., device: _Optional[str] = ..., cosignatures: _Optional[_Iterable[_Union[CoSignature, _Mapping]]] = ...) -> None: ...

class SubmitReceiptRequest(_message.Message):
    __slots__ = ("incarnation", "receipt")
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    incarnation: int
    receipt: Receipt
    def __init__(self, incarnation: _Optional[int] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ...) -> None: ...

class SubmitReceiptReply(_message.Message):
    __slots__ = ("receipt_id", "duplicate")
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    receipt_id: int
    duplicate: bool
    def __init__(self, receipt_id: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class CommandsRequest(_message.Message):
    __slots__ = ("incarnation",)
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    incarnation: int
    def __init__(self, incarnation: _Optional[int] = ...) -> None: ...

class WorkerCommand(_message.Message):
    __slots__ = ("drain", "stop")
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    drain: Drain
    stop: Stop
    def __init__(self, drain: _Optional[_Union[Drain, _Mapping]] = ..., stop: _Optional[_Union[Stop, _Mapping]] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Stop(_message.Message):
    __slots__ = ("reason", "timeout_s")
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    reason: str
    timeout_s: float
    def __init__(self, reason: _Optional[str] = ..., timeout_s: _Optional[float] = ...) -> None: ...
