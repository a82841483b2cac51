from lumenal.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestOptions(_message.Message):
    __slots__ = ("video_id", "filename", "sample_fps", "dedup_threshold", "batch_size", "ground_truth_csv", "ground_truth_csv_data")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FPS_FIELD_NUMBER: _ClassVar[int]
    DEDUP_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    GROUND_TRUTH_CSV_FIELD_NUMBER: _ClassVar[int]
    GROUND_TRUTH_CSV_DATA_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    filename: str
    sample_fps: float
    dedup_threshold: int
    batch_size: int
    ground_truth_csv: str
    ground_truth_csv_data: bytes
    def __init__(self, video_id: _Optional[str] = ..., filename: _Optional[str] = ..., sample_fps: _Optional[float] = ..., dedup_threshold: _Optional[int] = ..., batch_size: _Optional[int] = ..., ground_truth_csv: _Optional[str] = ..., ground_truth_csv_data: _Optional[bytes] = ...) -> None: ...

class IngestVideoRequest(_message.Message):
    __slots__ = ("options", "chunk")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    options: IngestOptions
    chunk: bytes
    def __init__(self, options: _Optional[_Union[IngestOptions, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class IngestPathRequest(_message.Message):
    __slots__ = ("path", "options")
    PATH_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    path: str
    options: IngestOptions
    def __init__(self, path: _Optional[str] = ..., options: _Optional[_Union[IngestOptions, _Mapping]] = ...) -> None: ...

class IngestProgress(_message.Message):
    __slots__ = ("video_id", "frames_decoded", "frames_stored", "frames_dropped_duplicate", "batches_published", "total_frames_estimate", "done", "bytes_received", "frames_skipped", "skipped", "already_ingested", "frames_unsampled")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DECODED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_STORED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DROPPED_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    BATCHES_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FRAMES_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_INGESTED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_UNSAMPLED_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    frames_decoded: int
    frames_stored: int
    frames_dropped_duplicate: int
    batches_published: int
    total_frames_estimate: int
    done: bool
    bytes_received: int
    frames_skipped: int
    skipped: _containers.RepeatedScalarFieldContainer[str]
    already_ingested: bool
    frames_unsampled: int
    def __init__(self, video_id: _Optional[str] = ..., frames_decoded: _Optional[int] = ..., frames_stored: _Optional[int] = ..., frames_dropped_duplicate: _Optional[int] = ..., batches_published: _Optional[int] = ..., total_frames_estimate: _Optional[int] = ..., done: _Optional[bool] = ..., bytes_received: _Optional[int] = ..., frames_skipped: _Optional[int] = ..., skipped: _Optional[_Iterable[str]] = ..., already_ingested: _Optional[bool] = ..., frames_unsampled: _Optional[int] = ...) -> None: ...

class GetFrameRequest(_message.Message):
    __slots__ = ("frame_id", "url_ttl_s")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    URL_TTL_S_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    url_ttl_s: int
    def __init__(self, frame_id: _Optional[str] = ..., url_ttl_s: _Optional[int] = ...) -> None: ...

class GetFramesRequest(_message.Message):
    __slots__ = ("frame_ids",)
    FRAME_IDS_FIELD_NUMBER: _ClassVar[int]
    frame_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, frame_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("meta", "image")
    META_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.FrameMeta
    image: bytes
    def __init__(self, meta: _Optional[_Union[_common_pb2.FrameMeta, _Mapping]] = ..., image: _Optional[bytes] = ...) -> None: ...

class ListFramesRequest(_message.Message):
    __slots__ = ("video_id", "page")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    page: _common_pb2.Page
    def __init__(self, video_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.Page, _Mapping]] = ...) -> None: ...

class ListFramesResponse(_message.Message):
    __slots__ = ("frames", "next_page_token", "total")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[_common_pb2.FrameMeta]
    next_page_token: str
    total: int
    def __init__(self, frames: _Optional[_Iterable[_Union[_common_pb2.FrameMeta, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class FrameUrl(_message.Message):
    __slots__ = ("url", "expires_in_s")
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_S_FIELD_NUMBER: _ClassVar[int]
    url: str
    expires_in_s: int
    def __init__(self, url: _Optional[str] = ..., expires_in_s: _Optional[int] = ...) -> None: ...

class ListVideosRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VideoInfo(_message.Message):
    __slots__ = ("video_id", "filename", "frames_stored", "frames_dropped_duplicate", "complete", "kind", "content_sha256", "frames_decoded", "frames_skipped", "sample_fps", "dedup_threshold")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FRAMES_STORED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DROPPED_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DECODED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FPS_FIELD_NUMBER: _ClassVar[int]
    DEDUP_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    video_id: str
    filename: str
    frames_stored: int
    frames_dropped_duplicate: int
    complete: bool
    kind: str
    content_sha256: str
    frames_decoded: int
    frames_skipped: int
    sample_fps: float
    dedup_threshold: int
    def __init__(self, video_id: _Optional[str] = ..., filename: _Optional[str] = ..., frames_stored: _Optional[int] = ..., frames_dropped_duplicate: _Optional[int] = ..., complete: _Optional[bool] = ..., kind: _Optional[str] = ..., content_sha256: _Optional[str] = ..., frames_decoded: _Optional[int] = ..., frames_skipped: _Optional[int] = ..., sample_fps: _Optional[float] = ..., dedup_threshold: _Optional[int] = ...) -> None: ...

class ListVideosResponse(_message.Message):
    __slots__ = ("videos",)
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    videos: _containers.RepeatedCompositeFieldContainer[VideoInfo]
    def __init__(self, videos: _Optional[_Iterable[_Union[VideoInfo, _Mapping]]] = ...) -> None: ...
