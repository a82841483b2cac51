import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_KIND_UNSPECIFIED: _ClassVar[LabelKind]
    LABEL_KIND_CLASS: _ClassVar[LabelKind]
    LABEL_KIND_SKIP: _ClassVar[LabelKind]
    LABEL_KIND_UNSURE: _ClassVar[LabelKind]
LABEL_KIND_UNSPECIFIED: LabelKind
LABEL_KIND_CLASS: LabelKind
LABEL_KIND_SKIP: LabelKind
LABEL_KIND_UNSURE: LabelKind

class FrameMeta(_message.Message):
    __slots__ = ("frame_id", "video_id", "frame_index", "timestamp_s", "object_key", "width", "height", "content_type", "ground_truth", "source", "phash")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    GROUND_TRUTH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PHASH_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    video_id: str
    frame_index: int
    timestamp_s: float
    object_key: str
    width: int
    height: int
    content_type: str
    ground_truth: str
    source: str
    phash: str
    def __init__(self, frame_id: _Optional[str] = ..., video_id: _Optional[str] = ..., frame_index: _Optional[int] = ..., timestamp_s: _Optional[float] = ..., object_key: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., content_type: _Optional[str] = ..., ground_truth: _Optional[str] = ..., source: _Optional[str] = ..., phash: _Optional[str] = ...) -> None: ...

class FrameScore(_message.Message):
    __slots__ = ("frame_id", "model_name", "model_version", "probabilities", "predicted_class", "least_confidence", "margin", "entropy", "bald", "variation_ratio", "embedding")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CLASS_FIELD_NUMBER: _ClassVar[int]
    LEAST_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_FIELD_NUMBER: _ClassVar[int]
    BALD_FIELD_NUMBER: _ClassVar[int]
    VARIATION_RATIO_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    model_name: str
    model_version: int
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    predicted_class: int
    least_confidence: float
    margin: float
    entropy: float
    bald: float
    variation_ratio: float
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, frame_id: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., probabilities: _Optional[_Iterable[float]] = ..., predicted_class: _Optional[int] = ..., least_confidence: _Optional[float] = ..., margin: _Optional[float] = ..., entropy: _Optional[float] = ..., bald: _Optional[float] = ..., variation_ratio: _Optional[float] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class Page(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class Timestamped(_message.Message):
    __slots__ = ("at",)
    AT_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
