import datetime

from engram_cli.rpc.engram.v1 import memory_pb2 as _memory_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ItemOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ITEM_OUTCOME_UNSPECIFIED: _ClassVar[ItemOutcome]
    ITEM_OUTCOME_CREATED: _ClassVar[ItemOutcome]
    ITEM_OUTCOME_UPDATED: _ClassVar[ItemOutcome]
    ITEM_OUTCOME_UNCHANGED: _ClassVar[ItemOutcome]
    ITEM_OUTCOME_REJECTED: _ClassVar[ItemOutcome]
ITEM_OUTCOME_UNSPECIFIED: ItemOutcome
ITEM_OUTCOME_CREATED: ItemOutcome
ITEM_OUTCOME_UPDATED: ItemOutcome
ITEM_OUTCOME_UNCHANGED: ItemOutcome
ITEM_OUTCOME_REJECTED: ItemOutcome

class BatchRememberRequest(_message.Message):
    __slots__ = ("memory_space_id", "memories", "auto_link", "link_threshold", "compact")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    AUTO_LINK_FIELD_NUMBER: _ClassVar[int]
    LINK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    COMPACT_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    memories: _containers.RepeatedCompositeFieldContainer[_memory_pb2.Memory]
    auto_link: bool
    link_threshold: float
    compact: bool
    def __init__(self, memory_space_id: _Optional[str] = ..., memories: _Optional[_Iterable[_Union[_memory_pb2.Memory, _Mapping]]] = ..., auto_link: _Optional[bool] = ..., link_threshold: _Optional[float] = ..., compact: _Optional[bool] = ...) -> None: ...

class BatchRememberView(_message.Message):
    __slots__ = ("memory_space_id", "memories", "auto_link", "link_threshold", "compact")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    AUTO_LINK_FIELD_NUMBER: _ClassVar[int]
    LINK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    COMPACT_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    memories: _containers.RepeatedCompositeFieldContainer[MemoryView]
    auto_link: bool
    link_threshold: float
    compact: bool
    def __init__(self, memory_space_id: _Optional[str] = ..., memories: _Optional[_Iterable[_Union[MemoryView, _Mapping]]] = ..., auto_link: _Optional[bool] = ..., link_threshold: _Optional[float] = ..., compact: _Optional[bool] = ...) -> None: ...

class MemoryView(_message.Message):
    __slots__ = ("id", "embedding", "activation", "confidence", "last_access", "created_at", "decay_rate", "content", "metadata", "tags", "memory_type")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_ACCESS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DECAY_RATE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    embedding: _containers.RepeatedScalarFieldContainer[bytes]
    activation: float
    confidence: _memory_pb2.Confidence
    last_access: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    decay_rate: float
    content: str
    metadata: _containers.ScalarMap[str, str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    memory_type: _memory_pb2.MemoryType
    def __init__(self, id: _Optional[str] = ..., embedding: _Optional[_Iterable[bytes]] = ..., activation: _Optional[float] = ..., confidence: _Optional[_Union[_memory_pb2.Confidence, _Mapping]] = ..., last_access: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decay_rate: _Optional[float] = ..., content: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., tags: _Optional[_Iterable[str]] = ..., memory_type: _Optional[_Union[_memory_pb2.MemoryType, str]] = ...) -> None: ...

class BatchItemResult(_message.Message):
    __slots__ = ("index", "memory_id", "outcome", "code", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    memory_id: str
    outcome: ItemOutcome
    code: int
    error: str
    def __init__(self, index: _Optional[int] = ..., memory_id: _Optional[str] = ..., outcome: _Optional[_Union[ItemOutcome, str]] = ..., code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class BatchRememberResponse(_message.Message):
    __slots__ = ("results", "stored", "rejected", "pressure", "max_batch", "outcomes")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    PRESSURE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchItemResult]
    stored: int
    rejected: int
    pressure: float
    max_batch: int
    outcomes: _containers.RepeatedScalarFieldContainer[ItemOutcome]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchItemResult, _Mapping]]] = ..., stored: _Optional[int] = ..., rejected: _Optional[int] = ..., pressure: _Optional[float] = ..., max_batch: _Optional[int] = ..., outcomes: _Optional[_Iterable[_Union[ItemOutcome, str]]] = ...) -> None: ...

class ServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfoResponse(_message.Message):
    __slots__ = ("version", "pid", "data_dir", "max_message_bytes", "max_batch", "started_at", "idle_timeout_s")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    version: str
    pid: int
    data_dir: str
    max_message_bytes: int
    max_batch: int
    started_at: float
    idle_timeout_s: float
    def __init__(self, version: _Optional[str] = ..., pid: _Optional[int] = ..., data_dir: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., max_batch: _Optional[int] = ..., started_at: _Optional[float] = ..., idle_timeout_s: _Optional[float] = ...) -> None: ...

class Setting(_message.Message):
    __slots__ = ("key", "value_json", "default_json", "source", "restart_required", "description")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_JSON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RESTART_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    key: str
    value_json: str
    default_json: str
    source: str
    restart_required: bool
    description: str
    def __init__(self, key: _Optional[str] = ..., value_json: _Optional[str] = ..., default_json: _Optional[str] = ..., source: _Optional[str] = ..., restart_required: _Optional[bool] = ..., description: _Optional[str] = ...) -> None: ...

class GetSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSettingsResponse(_message.Message):
    __slots__ = ("settings", "config_path")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_PATH_FIELD_NUMBER: _ClassVar[int]
    settings: _containers.RepeatedCompositeFieldContainer[Setting]
    config_path: str
    def __init__(self, settings: _Optional[_Iterable[_Union[Setting, _Mapping]]] = ..., config_path: _Optional[str] = ...) -> None: ...

class ApplySettingsRequest(_message.Message):
    __slots__ = ("values_json", "dry_run", "reset")
    class ValuesJsonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VALUES_JSON_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    values_json: _containers.ScalarMap[str, str]
    dry_run: bool
    reset: bool
    def __init__(self, values_json: _Optional[_Mapping[str, str]] = ..., dry_run: _Optional[bool] = ..., reset: _Optional[bool] = ...) -> None: ...

class SettingChange(_message.Message):
    __slots__ = ("key", "before_json", "after_json", "restart_required")
    KEY_FIELD_NUMBER: _ClassVar[int]
    BEFORE_JSON_FIELD_NUMBER: _ClassVar[int]
    AFTER_JSON_FIELD_NUMBER: _ClassVar[int]
    RESTART_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    key: str
    before_json: str
    after_json: str
    restart_required: bool
    def __init__(self, key: _Optional[str] = ..., before_json: _Optional[str] = ..., after_json: _Optional[str] = ..., restart_required: _Optional[bool] = ...) -> None: ...

class ApplySettingsResponse(_message.Message):
    __slots__ = ("changes", "restart_required", "applied")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    RESTART_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[SettingChange]
    restart_required: _containers.RepeatedScalarFieldContainer[str]
    applied: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[SettingChange, _Mapping]]] = ..., restart_required: _Optional[_Iterable[str]] = ..., applied: _Optional[bool] = ...) -> None: ...

class DropSpaceRequest(_message.Message):
    __slots__ = ("memory_space_id",)
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    def __init__(self, memory_space_id: _Optional[str] = ...) -> None: ...

class DropSpaceResponse(_message.Message):
    __slots__ = ("memories_deleted",)
    MEMORIES_DELETED_FIELD_NUMBER: _ClassVar[int]
    memories_deleted: int
    def __init__(self, memories_deleted: _Optional[int] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("memory_space_id", "since", "include_embeddings", "page_size")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    since: float
    include_embeddings: bool
    page_size: int
    def __init__(self, memory_space_id: _Optional[str] = ..., since: _Optional[float] = ..., include_embeddings: _Optional[bool] = ..., page_size: _Optional[int] = ...) -> None: ...

class ExportedAssociation(_message.Message):
    __slots__ = ("target", "strength", "type", "reason")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    target: str
    strength: float
    type: int
    reason: str
    def __init__(self, target: _Optional[str] = ..., strength: _Optional[float] = ..., type: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ExportedMemory(_message.Message):
    __slots__ = ("id", "content", "embedding", "confidence", "tags_json", "metadata_json", "memory_type", "created_at", "decay_rate", "state", "associations")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TAGS_JSON_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DECAY_RATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ASSOCIATIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    content: str
    embedding: bytes
    confidence: float
    tags_json: str
    metadata_json: str
    memory_type: int
    created_at: float
    decay_rate: float
    state: int
    associations: _containers.RepeatedCompositeFieldContainer[ExportedAssociation]
    def __init__(self, id: _Optional[str] = ..., content: _Optional[str] = ..., embedding: _Optional[bytes] = ..., confidence: _Optional[float] = ..., tags_json: _Optional[str] = ..., metadata_json: _Optional[str] = ..., memory_type: _Optional[int] = ..., created_at: _Optional[float] = ..., decay_rate: _Optional[float] = ..., state: _Optional[int] = ..., associations: _Optional[_Iterable[_Union[ExportedAssociation, _Mapping]]] = ...) -> None: ...

class ExportPage(_message.Message):
    __slots__ = ("memories", "total")
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    memories: _containers.RepeatedCompositeFieldContainer[ExportedMemory]
    total: int
    def __init__(self, memories: _Optional[_Iterable[_Union[ExportedMemory, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class Association(_message.Message):
    __slots__ = ("source", "target", "strength", "type", "reason")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    strength: float
    type: int
    reason: str
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ..., strength: _Optional[float] = ..., type: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class PutAssociationsRequest(_message.Message):
    __slots__ = ("memory_space_id", "associations")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    ASSOCIATIONS_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    associations: _containers.RepeatedCompositeFieldContainer[Association]
    def __init__(self, memory_space_id: _Optional[str] = ..., associations: _Optional[_Iterable[_Union[Association, _Mapping]]] = ...) -> None: ...

class PutAssociationsResponse(_message.Message):
    __slots__ = ("written",)
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    written: int
    def __init__(self, written: _Optional[int] = ...) -> None: ...

class ListSpacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SpaceInfo(_message.Message):
    __slots__ = ("name", "memories", "suppressed", "associations", "created_at", "dimension")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    ASSOCIATIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    memories: int
    suppressed: int
    associations: int
    created_at: float
    dimension: int
    def __init__(self, name: _Optional[str] = ..., memories: _Optional[int] = ..., suppressed: _Optional[int] = ..., associations: _Optional[int] = ..., created_at: _Optional[float] = ..., dimension: _Optional[int] = ...) -> None: ...

class ListSpacesResponse(_message.Message):
    __slots__ = ("spaces",)
    SPACES_FIELD_NUMBER: _ClassVar[int]
    spaces: _containers.RepeatedCompositeFieldContainer[SpaceInfo]
    def __init__(self, spaces: _Optional[_Iterable[_Union[SpaceInfo, _Mapping]]] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: str
    def __init__(self, destination: _Optional[str] = ...) -> None: ...

class BackupResponse(_message.Message):
    __slots__ = ("path", "memories", "associations", "bytes", "seconds")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    ASSOCIATIONS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    path: str
    memories: int
    associations: int
    bytes: int
    seconds: float
    def __init__(self, path: _Optional[str] = ..., memories: _Optional[int] = ..., associations: _Optional[int] = ..., bytes: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...
