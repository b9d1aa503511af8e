import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from engram_cli.rpc.engram.v1 import memory_pb2 as _memory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ForgetMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FORGET_MODE_UNSPECIFIED: _ClassVar[ForgetMode]
    FORGET_MODE_SUPPRESS: _ClassVar[ForgetMode]
    FORGET_MODE_DELETE: _ClassVar[ForgetMode]
    FORGET_MODE_OVERWRITE: _ClassVar[ForgetMode]

class ConsolidationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSOLIDATION_MODE_UNSPECIFIED: _ClassVar[ConsolidationMode]
    CONSOLIDATION_MODE_SYNAPTIC: _ClassVar[ConsolidationMode]
    CONSOLIDATION_MODE_SYSTEMS: _ClassVar[ConsolidationMode]
    CONSOLIDATION_MODE_RECONSOLIDATION: _ClassVar[ConsolidationMode]

class AssociationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSOCIATION_TYPE_UNSPECIFIED: _ClassVar[AssociationType]
    ASSOCIATION_TYPE_SEMANTIC: _ClassVar[AssociationType]
    ASSOCIATION_TYPE_TEMPORAL: _ClassVar[AssociationType]
    ASSOCIATION_TYPE_CAUSAL: _ClassVar[AssociationType]
    ASSOCIATION_TYPE_SPATIAL: _ClassVar[AssociationType]
    ASSOCIATION_TYPE_EMOTIONAL: _ClassVar[AssociationType]
FORGET_MODE_UNSPECIFIED: ForgetMode
FORGET_MODE_SUPPRESS: ForgetMode
FORGET_MODE_DELETE: ForgetMode
FORGET_MODE_OVERWRITE: ForgetMode
CONSOLIDATION_MODE_UNSPECIFIED: ConsolidationMode
CONSOLIDATION_MODE_SYNAPTIC: ConsolidationMode
CONSOLIDATION_MODE_SYSTEMS: ConsolidationMode
CONSOLIDATION_MODE_RECONSOLIDATION: ConsolidationMode
ASSOCIATION_TYPE_UNSPECIFIED: AssociationType
ASSOCIATION_TYPE_SEMANTIC: AssociationType
ASSOCIATION_TYPE_TEMPORAL: AssociationType
ASSOCIATION_TYPE_CAUSAL: AssociationType
ASSOCIATION_TYPE_SPATIAL: AssociationType
ASSOCIATION_TYPE_EMOTIONAL: AssociationType

class RememberRequest(_message.Message):
    __slots__ = ("memory_space_id", "memory", "episode", "auto_link", "link_threshold")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    AUTO_LINK_FIELD_NUMBER: _ClassVar[int]
    LINK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    memory: _memory_pb2.Memory
    episode: _memory_pb2.Episode
    auto_link: bool
    link_threshold: float
    def __init__(self, memory_space_id: _Optional[str] = ..., memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ..., episode: _Optional[_Union[_memory_pb2.Episode, _Mapping]] = ..., auto_link: _Optional[bool] = ..., link_threshold: _Optional[float] = ...) -> None: ...

class RememberResponse(_message.Message):
    __slots__ = ("memory_id", "storage_confidence", "linked_memories", "initial_state")
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LINKED_MEMORIES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_FIELD_NUMBER: _ClassVar[int]
    memory_id: str
    storage_confidence: _memory_pb2.Confidence
    linked_memories: _containers.RepeatedScalarFieldContainer[str]
    initial_state: _memory_pb2.ConsolidationState
    def __init__(self, memory_id: _Optional[str] = ..., storage_confidence: _Optional[_Union[_memory_pb2.Confidence, _Mapping]] = ..., linked_memories: _Optional[_Iterable[str]] = ..., initial_state: _Optional[_Union[_memory_pb2.ConsolidationState, str]] = ...) -> None: ...

class RecallRequest(_message.Message):
    __slots__ = ("memory_space_id", "cue", "max_results", "include_metadata", "trace_activation")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CUE_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    TRACE_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    cue: _memory_pb2.Cue
    max_results: int
    include_metadata: bool
    trace_activation: bool
    def __init__(self, memory_space_id: _Optional[str] = ..., cue: _Optional[_Union[_memory_pb2.Cue, _Mapping]] = ..., max_results: _Optional[int] = ..., include_metadata: _Optional[bool] = ..., trace_activation: _Optional[bool] = ...) -> None: ...

class ActivationTrace(_message.Message):
    __slots__ = ("memory_id", "activation_level", "activation_path", "timestamp")
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    memory_id: str
    activation_level: float
    activation_path: _containers.RepeatedScalarFieldContainer[str]
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, memory_id: _Optional[str] = ..., activation_level: _Optional[float] = ..., activation_path: _Optional[_Iterable[str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecallResponse(_message.Message):
    __slots__ = ("memories", "recall_confidence", "metadata", "traces")
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    RECALL_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TRACES_FIELD_NUMBER: _ClassVar[int]
    memories: _containers.RepeatedCompositeFieldContainer[_memory_pb2.Memory]
    recall_confidence: _memory_pb2.Confidence
    metadata: _memory_pb2.RecallMetadata
    traces: _containers.RepeatedCompositeFieldContainer[ActivationTrace]
    def __init__(self, memories: _Optional[_Iterable[_Union[_memory_pb2.Memory, _Mapping]]] = ..., recall_confidence: _Optional[_Union[_memory_pb2.Confidence, _Mapping]] = ..., metadata: _Optional[_Union[_memory_pb2.RecallMetadata, _Mapping]] = ..., traces: _Optional[_Iterable[_Union[ActivationTrace, _Mapping]]] = ...) -> None: ...

class ForgetRequest(_message.Message):
    __slots__ = ("memory_space_id", "memory_id", "pattern", "mode")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    memory_id: str
    pattern: _memory_pb2.Cue
    mode: ForgetMode
    def __init__(self, memory_space_id: _Optional[str] = ..., memory_id: _Optional[str] = ..., pattern: _Optional[_Union[_memory_pb2.Cue, _Mapping]] = ..., mode: _Optional[_Union[ForgetMode, str]] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ("memories_affected", "forget_confidence", "reversible")
    MEMORIES_AFFECTED_FIELD_NUMBER: _ClassVar[int]
    FORGET_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    REVERSIBLE_FIELD_NUMBER: _ClassVar[int]
    memories_affected: int
    forget_confidence: _memory_pb2.Confidence
    reversible: bool
    def __init__(self, memories_affected: _Optional[int] = ..., forget_confidence: _Optional[_Union[_memory_pb2.Confidence, _Mapping]] = ..., reversible: _Optional[bool] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("memory_space_id", "memory", "embedding", "content", "recognition_threshold")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    RECOGNITION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    memory: _memory_pb2.Memory
    embedding: _memory_pb2.Embedding
    content: str
    recognition_threshold: float
    def __init__(self, memory_space_id: _Optional[str] = ..., memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ..., embedding: _Optional[_Union[_memory_pb2.Embedding, _Mapping]] = ..., content: _Optional[str] = ..., recognition_threshold: _Optional[float] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("recognized", "recognition_confidence", "similar_memories", "familiarity_score")
    RECOGNIZED_FIELD_NUMBER: _ClassVar[int]
    RECOGNITION_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SIMILAR_MEMORIES_FIELD_NUMBER: _ClassVar[int]
    FAMILIARITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    recognized: bool
    recognition_confidence: _memory_pb2.Confidence
    similar_memories: _containers.RepeatedCompositeFieldContainer[_memory_pb2.Memory]
    familiarity_score: float
    def __init__(self, recognized: _Optional[bool] = ..., recognition_confidence: _Optional[_Union[_memory_pb2.Confidence, _Mapping]] = ..., similar_memories: _Optional[_Iterable[_Union[_memory_pb2.Memory, _Mapping]]] = ..., familiarity_score: _Optional[float] = ...) -> None: ...

class MemoryIdList(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ConsolidationCriteria(_message.Message):
    __slots__ = ("older_than", "importance_threshold", "types")
    OLDER_THAN_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    older_than: _timestamp_pb2.Timestamp
    importance_threshold: float
    types: _containers.RepeatedScalarFieldContainer[_memory_pb2.MemoryType]
    def __init__(self, older_than: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., importance_threshold: _Optional[float] = ..., types: _Optional[_Iterable[_Union[_memory_pb2.MemoryType, str]]] = ...) -> None: ...

class ConsolidateRequest(_message.Message):
    __slots__ = ("memory_space_id", "all", "memory_ids", "criteria", "mode")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_IDS_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    all: _empty_pb2.Empty
    memory_ids: MemoryIdList
    criteria: ConsolidationCriteria
    mode: ConsolidationMode
    def __init__(self, memory_space_id: _Optional[str] = ..., all: _Optional[_Union[_empty_pb2.Empty, _Mapping]] = ..., memory_ids: _Optional[_Union[MemoryIdList, _Mapping]] = ..., criteria: _Optional[_Union[ConsolidationCriteria, _Mapping]] = ..., mode: _Optional[_Union[ConsolidationMode, str]] = ...) -> None: ...

class ConsolidateResponse(_message.Message):
    __slots__ = ("memories_consolidated", "new_associations", "state_changes", "next_consolidation")
    class StateChangesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _memory_pb2.ConsolidationState
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_memory_pb2.ConsolidationState, str]] = ...) -> None: ...
    MEMORIES_CONSOLIDATED_FIELD_NUMBER: _ClassVar[int]
    NEW_ASSOCIATIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CONSOLIDATION_FIELD_NUMBER: _ClassVar[int]
    memories_consolidated: int
    new_associations: int
    state_changes: _containers.ScalarMap[str, _memory_pb2.ConsolidationState]
    next_consolidation: _timestamp_pb2.Timestamp
    def __init__(self, memories_consolidated: _Optional[int] = ..., new_associations: _Optional[int] = ..., state_changes: _Optional[_Mapping[str, _memory_pb2.ConsolidationState]] = ..., next_consolidation: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AssociateRequest(_message.Message):
    __slots__ = ("memory_space_id", "source_memory", "target_memory", "association_type", "strength", "reason")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_MEMORY_FIELD_NUMBER: _ClassVar[int]
    TARGET_MEMORY_FIELD_NUMBER: _ClassVar[int]
    ASSOCIATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    source_memory: str
    target_memory: str
    association_type: AssociationType
    strength: float
    reason: str
    def __init__(self, memory_space_id: _Optional[str] = ..., source_memory: _Optional[str] = ..., target_memory: _Optional[str] = ..., association_type: _Optional[_Union[AssociationType, str]] = ..., strength: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class AssociateResponse(_message.Message):
    __slots__ = ("created", "final_strength", "affected_paths")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    FINAL_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_PATHS_FIELD_NUMBER: _ClassVar[int]
    created: bool
    final_strength: float
    affected_paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, created: _Optional[bool] = ..., final_strength: _Optional[float] = ..., affected_paths: _Optional[_Iterable[str]] = ...) -> None: ...

class IntrospectRequest(_message.Message):
    __slots__ = ("memory_space_id", "metrics", "include_health", "include_statistics")
    MEMORY_SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HEALTH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STATISTICS_FIELD_NUMBER: _ClassVar[int]
    memory_space_id: str
    metrics: _containers.RepeatedScalarFieldContainer[str]
    include_health: bool
    include_statistics: bool
    def __init__(self, memory_space_id: _Optional[str] = ..., metrics: _Optional[_Iterable[str]] = ..., include_health: _Optional[bool] = ..., include_statistics: _Optional[bool] = ...) -> None: ...

class ComponentHealth(_message.Message):
    __slots__ = ("operational", "performance", "status_message")
    OPERATIONAL_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    operational: bool
    performance: float
    status_message: str
    def __init__(self, operational: _Optional[bool] = ..., performance: _Optional[float] = ..., status_message: _Optional[str] = ...) -> None: ...

class HealthStatus(_message.Message):
    __slots__ = ("healthy", "components", "summary")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ComponentHealth
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ComponentHealth, _Mapping]] = ...) -> None: ...
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    components: _containers.MessageMap[str, ComponentHealth]
    summary: str
    def __init__(self, healthy: _Optional[bool] = ..., components: _Optional[_Mapping[str, ComponentHealth]] = ..., summary: _Optional[str] = ...) -> None: ...

class MemoryStatistics(_message.Message):
    __slots__ = ("total_memories", "by_type", "avg_activation", "avg_confidence", "total_associations", "oldest_memory", "newest_memory")
    class ByTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TOTAL_MEMORIES_FIELD_NUMBER: _ClassVar[int]
    BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    AVG_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    AVG_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ASSOCIATIONS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_MEMORY_FIELD_NUMBER: _ClassVar[int]
    NEWEST_MEMORY_FIELD_NUMBER: _ClassVar[int]
    total_memories: int
    by_type: _containers.ScalarMap[str, int]
    avg_activation: float
    avg_confidence: float
    total_associations: int
    oldest_memory: _timestamp_pb2.Timestamp
    newest_memory: _timestamp_pb2.Timestamp
    def __init__(self, total_memories: _Optional[int] = ..., by_type: _Optional[_Mapping[str, int]] = ..., avg_activation: _Optional[float] = ..., avg_confidence: _Optional[float] = ..., total_associations: _Optional[int] = ..., oldest_memory: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., newest_memory: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IntrospectResponse(_message.Message):
    __slots__ = ("metrics", "health", "statistics", "active_processes", "metrics_snapshot_json")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    METRICS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    METRICS_SNAPSHOT_JSON_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.ScalarMap[str, float]
    health: HealthStatus
    statistics: MemoryStatistics
    active_processes: _containers.RepeatedScalarFieldContainer[str]
    metrics_snapshot_json: str
    def __init__(self, metrics: _Optional[_Mapping[str, float]] = ..., health: _Optional[_Union[HealthStatus, _Mapping]] = ..., statistics: _Optional[_Union[MemoryStatistics, _Mapping]] = ..., active_processes: _Optional[_Iterable[str]] = ..., metrics_snapshot_json: _Optional[str] = ...) -> None: ...
