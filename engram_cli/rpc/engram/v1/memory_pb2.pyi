import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConfidenceCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFIDENCE_CATEGORY_UNSPECIFIED: _ClassVar[ConfidenceCategory]
    CONFIDENCE_CATEGORY_NONE: _ClassVar[ConfidenceCategory]
    CONFIDENCE_CATEGORY_LOW: _ClassVar[ConfidenceCategory]
    CONFIDENCE_CATEGORY_MEDIUM: _ClassVar[ConfidenceCategory]
    CONFIDENCE_CATEGORY_HIGH: _ClassVar[ConfidenceCategory]
    CONFIDENCE_CATEGORY_CERTAIN: _ClassVar[ConfidenceCategory]

class MemoryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMORY_TYPE_UNSPECIFIED: _ClassVar[MemoryType]
    MEMORY_TYPE_EPISODIC: _ClassVar[MemoryType]
    MEMORY_TYPE_SEMANTIC: _ClassVar[MemoryType]
    MEMORY_TYPE_PROCEDURAL: _ClassVar[MemoryType]
    MEMORY_TYPE_WORKING: _ClassVar[MemoryType]

class ConsolidationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSOLIDATION_STATE_UNSPECIFIED: _ClassVar[ConsolidationState]
    CONSOLIDATION_STATE_RECENT: _ClassVar[ConsolidationState]
    CONSOLIDATION_STATE_CONSOLIDATING: _ClassVar[ConsolidationState]
    CONSOLIDATION_STATE_CONSOLIDATED: _ClassVar[ConsolidationState]
    CONSOLIDATION_STATE_RECONSOLIDATING: _ClassVar[ConsolidationState]
CONFIDENCE_CATEGORY_UNSPECIFIED: ConfidenceCategory
CONFIDENCE_CATEGORY_NONE: ConfidenceCategory
CONFIDENCE_CATEGORY_LOW: ConfidenceCategory
CONFIDENCE_CATEGORY_MEDIUM: ConfidenceCategory
CONFIDENCE_CATEGORY_HIGH: ConfidenceCategory
CONFIDENCE_CATEGORY_CERTAIN: ConfidenceCategory
MEMORY_TYPE_UNSPECIFIED: MemoryType
MEMORY_TYPE_EPISODIC: MemoryType
MEMORY_TYPE_SEMANTIC: MemoryType
MEMORY_TYPE_PROCEDURAL: MemoryType
MEMORY_TYPE_WORKING: MemoryType
CONSOLIDATION_STATE_UNSPECIFIED: ConsolidationState
CONSOLIDATION_STATE_RECENT: ConsolidationState
CONSOLIDATION_STATE_CONSOLIDATING: ConsolidationState
CONSOLIDATION_STATE_CONSOLIDATED: ConsolidationState
CONSOLIDATION_STATE_RECONSOLIDATING: ConsolidationState

class Confidence(_message.Message):
    __slots__ = ("value", "category", "reasoning")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    value: float
    category: ConfidenceCategory
    reasoning: str
    def __init__(self, value: _Optional[float] = ..., category: _Optional[_Union[ConfidenceCategory, str]] = ..., reasoning: _Optional[str] = ...) -> None: ...

class Memory(_message.Message):
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
    embedding: _containers.RepeatedScalarFieldContainer[float]
    activation: float
    confidence: Confidence
    last_access: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    decay_rate: float
    content: str
    metadata: _containers.ScalarMap[str, str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    memory_type: MemoryType
    def __init__(self, id: _Optional[str] = ..., embedding: _Optional[_Iterable[float]] = ..., activation: _Optional[float] = ..., confidence: _Optional[_Union[Confidence, _Mapping]] = ..., last_access: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decay_rate: _Optional[float] = ..., content: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., tags: _Optional[_Iterable[str]] = ..., memory_type: _Optional[_Union[MemoryType, str]] = ...) -> None: ...

class Episode(_message.Message):
    __slots__ = ("id", "when", "what", "embedding", "encoding_confidence", "where_location", "who", "why", "how", "decay_rate", "emotional_valence", "importance", "consolidation_state", "last_replay")
    ID_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ENCODING_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    WHERE_LOCATION_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    HOW_FIELD_NUMBER: _ClassVar[int]
    DECAY_RATE_FIELD_NUMBER: _ClassVar[int]
    EMOTIONAL_VALENCE_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    CONSOLIDATION_STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_REPLAY_FIELD_NUMBER: _ClassVar[int]
    id: str
    when: _timestamp_pb2.Timestamp
    what: str
    embedding: _containers.RepeatedScalarFieldContainer[float]
    encoding_confidence: Confidence
    where_location: str
    who: _containers.RepeatedScalarFieldContainer[str]
    why: str
    how: str
    decay_rate: float
    emotional_valence: float
    importance: float
    consolidation_state: ConsolidationState
    last_replay: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., when: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., what: _Optional[str] = ..., embedding: _Optional[_Iterable[float]] = ..., encoding_confidence: _Optional[_Union[Confidence, _Mapping]] = ..., where_location: _Optional[str] = ..., who: _Optional[_Iterable[str]] = ..., why: _Optional[str] = ..., how: _Optional[str] = ..., decay_rate: _Optional[float] = ..., emotional_valence: _Optional[float] = ..., importance: _Optional[float] = ..., consolidation_state: _Optional[_Union[ConsolidationState, str]] = ..., last_replay: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EmbeddingCue(_message.Message):
    __slots__ = ("vector", "similarity_threshold")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    vector: _containers.RepeatedScalarFieldContainer[float]
    similarity_threshold: float
    def __init__(self, vector: _Optional[_Iterable[float]] = ..., similarity_threshold: _Optional[float] = ...) -> None: ...

class ContextCue(_message.Message):
    __slots__ = ("time_start", "time_end", "location", "participants")
    TIME_START_FIELD_NUMBER: _ClassVar[int]
    TIME_END_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    time_start: _timestamp_pb2.Timestamp
    time_end: _timestamp_pb2.Timestamp
    location: str
    participants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, time_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., time_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., location: _Optional[str] = ..., participants: _Optional[_Iterable[str]] = ...) -> None: ...

class SemanticCue(_message.Message):
    __slots__ = ("query", "fuzzy_threshold", "required_tags", "excluded_tags")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    FUZZY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_TAGS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_TAGS_FIELD_NUMBER: _ClassVar[int]
    query: str
    fuzzy_threshold: float
    required_tags: _containers.RepeatedScalarFieldContainer[str]
    excluded_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, query: _Optional[str] = ..., fuzzy_threshold: _Optional[float] = ..., required_tags: _Optional[_Iterable[str]] = ..., excluded_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class Cue(_message.Message):
    __slots__ = ("id", "embedding", "context", "semantic", "threshold", "max_results", "spread_activation", "activation_decay")
    ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    SPREAD_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_DECAY_FIELD_NUMBER: _ClassVar[int]
    id: str
    embedding: EmbeddingCue
    context: ContextCue
    semantic: SemanticCue
    threshold: Confidence
    max_results: int
    spread_activation: bool
    activation_decay: float
    def __init__(self, id: _Optional[str] = ..., embedding: _Optional[_Union[EmbeddingCue, _Mapping]] = ..., context: _Optional[_Union[ContextCue, _Mapping]] = ..., semantic: _Optional[_Union[SemanticCue, _Mapping]] = ..., threshold: _Optional[_Union[Confidence, _Mapping]] = ..., max_results: _Optional[int] = ..., spread_activation: _Optional[bool] = ..., activation_decay: _Optional[float] = ...) -> None: ...

class RecallMetadata(_message.Message):
    __slots__ = ("total_activated", "above_threshold", "avg_activation", "recall_time_ms", "activation_path")
    TOTAL_ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    ABOVE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AVG_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    RECALL_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    total_activated: int
    above_threshold: int
    avg_activation: float
    recall_time_ms: int
    activation_path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, total_activated: _Optional[int] = ..., above_threshold: _Optional[int] = ..., avg_activation: _Optional[float] = ..., recall_time_ms: _Optional[int] = ..., activation_path: _Optional[_Iterable[str]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...
