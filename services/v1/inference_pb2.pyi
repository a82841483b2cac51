from lumenal.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TopKRequest(_message.Message):
    __slots__ = ("k", "strategy", "exclude_frame_ids", "seed")
    K_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FRAME_IDS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    k: int
    strategy: str
    exclude_frame_ids: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    def __init__(self, k: _Optional[int] = ..., strategy: _Optional[str] = ..., exclude_frame_ids: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ...) -> None: ...

class TopKResponse(_message.Message):
    __slots__ = ("frames", "strategy", "model_version", "pool_size")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    POOL_SIZE_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[_common_pb2.FrameScore]
    strategy: str
    model_version: int
    pool_size: int
    def __init__(self, frames: _Optional[_Iterable[_Union[_common_pb2.FrameScore, _Mapping]]] = ..., strategy: _Optional[str] = ..., model_version: _Optional[int] = ..., pool_size: _Optional[int] = ...) -> None: ...

class GetScoreRequest(_message.Message):
    __slots__ = ("frame_id",)
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    def __init__(self, frame_id: _Optional[str] = ...) -> None: ...

class GetPoolStatsRequest(_message.Message):
    __slots__ = ("histogram_bins", "metric")
    HISTOGRAM_BINS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    histogram_bins: int
    metric: str
    def __init__(self, histogram_bins: _Optional[int] = ..., metric: _Optional[str] = ...) -> None: ...

class PoolStats(_message.Message):
    __slots__ = ("frames", "scored", "labeled", "model_version", "histogram_edges", "histogram_counts", "histogram_metric", "rescore")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    SCORED_FIELD_NUMBER: _ClassVar[int]
    LABELED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_EDGES_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_COUNTS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_METRIC_FIELD_NUMBER: _ClassVar[int]
    RESCORE_FIELD_NUMBER: _ClassVar[int]
    frames: int
    scored: int
    labeled: int
    model_version: int
    histogram_edges: _containers.RepeatedScalarFieldContainer[float]
    histogram_counts: _containers.RepeatedScalarFieldContainer[int]
    histogram_metric: str
    rescore: RescoreStatus
    def __init__(self, frames: _Optional[int] = ..., scored: _Optional[int] = ..., labeled: _Optional[int] = ..., model_version: _Optional[int] = ..., histogram_edges: _Optional[_Iterable[float]] = ..., histogram_counts: _Optional[_Iterable[int]] = ..., histogram_metric: _Optional[str] = ..., rescore: _Optional[_Union[RescoreStatus, _Mapping]] = ...) -> None: ...

class RescoreRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RescoreStatus(_message.Message):
    __slots__ = ("running", "model_version", "done", "total")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    running: bool
    model_version: int
    done: int
    total: int
    def __init__(self, running: _Optional[bool] = ..., model_version: _Optional[int] = ..., done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class ListStrategiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListStrategiesResponse(_message.Message):
    __slots__ = ("strategies", "default_strategy")
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    strategies: _containers.RepeatedScalarFieldContainer[str]
    default_strategy: str
    def __init__(self, strategies: _Optional[_Iterable[str]] = ..., default_strategy: _Optional[str] = ...) -> None: ...
