import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from lumenal.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FramesIngested(_message.Message):
    __slots__ = ("video_id", "frames", "ingested_at", "last_batch", "aborted")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_BATCH_FIELD_NUMBER: _ClassVar[int]
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    frames: _containers.RepeatedCompositeFieldContainer[_common_pb2.FrameMeta]
    ingested_at: _timestamp_pb2.Timestamp
    last_batch: bool
    aborted: bool
    def __init__(self, video_id: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[_common_pb2.FrameMeta, _Mapping]]] = ..., ingested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_batch: _Optional[bool] = ..., aborted: _Optional[bool] = ...) -> None: ...

class FramesScored(_message.Message):
    __slots__ = ("model_name", "model_version", "scores", "scored_at", "rescore")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    SCORED_AT_FIELD_NUMBER: _ClassVar[int]
    RESCORE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    scores: _containers.RepeatedCompositeFieldContainer[_common_pb2.FrameScore]
    scored_at: _timestamp_pb2.Timestamp
    rescore: bool
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., scores: _Optional[_Iterable[_Union[_common_pb2.FrameScore, _Mapping]]] = ..., scored_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rescore: _Optional[bool] = ...) -> None: ...

class LabelSubmitted(_message.Message):
    __slots__ = ("label_id", "frame_id", "annotator", "kind", "label", "request_id", "submitted_at", "seconds_spent")
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_SPENT_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    frame_id: str
    annotator: str
    kind: _common_pb2.LabelKind
    label: str
    request_id: str
    submitted_at: _timestamp_pb2.Timestamp
    seconds_spent: float
    def __init__(self, label_id: _Optional[str] = ..., frame_id: _Optional[str] = ..., annotator: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.LabelKind, str]] = ..., label: _Optional[str] = ..., request_id: _Optional[str] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seconds_spent: _Optional[float] = ...) -> None: ...

class LabelResolved(_message.Message):
    __slots__ = ("frame_id", "label", "votes", "annotations", "resolved_by", "resolved_at", "sequence")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    label: str
    votes: int
    annotations: int
    resolved_by: str
    resolved_at: _timestamp_pb2.Timestamp
    sequence: int
    def __init__(self, frame_id: _Optional[str] = ..., label: _Optional[str] = ..., votes: _Optional[int] = ..., annotations: _Optional[int] = ..., resolved_by: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class ModelPublished(_message.Message):
    __slots__ = ("model_name", "version", "registry_key", "metrics", "class_names", "published_at", "reason", "input_size")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_KEY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    registry_key: str
    metrics: _containers.ScalarMap[str, float]
    class_names: _containers.RepeatedScalarFieldContainer[str]
    published_at: _timestamp_pb2.Timestamp
    reason: str
    input_size: int
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., registry_key: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., class_names: _Optional[_Iterable[str]] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., input_size: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("topic", "partition", "offset", "key", "value", "error", "consumer_group", "failed_at")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    error: str
    consumer_group: str
    failed_at: _timestamp_pb2.Timestamp
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., error: _Optional[str] = ..., consumer_group: _Optional[str] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
