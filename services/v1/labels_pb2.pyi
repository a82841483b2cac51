import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from lumenal.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_ANNOTATOR: _ClassVar[Role]
    ROLE_REVIEWER: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_SERVICE: _ClassVar[Role]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
    EXPORT_FORMAT_JSON: _ClassVar[ExportFormat]
    EXPORT_FORMAT_COCO: _ClassVar[ExportFormat]
ROLE_UNSPECIFIED: Role
ROLE_ANNOTATOR: Role
ROLE_REVIEWER: Role
ROLE_ADMIN: Role
ROLE_SERVICE: Role
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat
EXPORT_FORMAT_JSON: ExportFormat
EXPORT_FORMAT_COCO: ExportFormat

class Annotator(_message.Message):
    __slots__ = ("username", "display_name", "role", "active")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    username: str
    display_name: str
    role: Role
    active: bool
    def __init__(self, username: _Optional[str] = ..., display_name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., active: _Optional[bool] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("token", "annotator", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    annotator: Annotator
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., annotator: _Optional[_Union[Annotator, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogoutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateAnnotatorRequest(_message.Message):
    __slots__ = ("username", "password", "display_name", "role")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    display_name: str
    role: Role
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., display_name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ...) -> None: ...

class UpdateAnnotatorRequest(_message.Message):
    __slots__ = ("username", "password", "role", "active", "display_name")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    role: Role
    active: bool
    display_name: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., active: _Optional[bool] = ..., display_name: _Optional[str] = ...) -> None: ...

class ListAnnotatorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAnnotatorsResponse(_message.Message):
    __slots__ = ("annotators",)
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    annotators: _containers.RepeatedCompositeFieldContainer[Annotator]
    def __init__(self, annotators: _Optional[_Iterable[_Union[Annotator, _Mapping]]] = ...) -> None: ...

class GetProjectRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Project(_message.Message):
    __slots__ = ("class_names", "strategy", "overlap_fraction", "overlap_k", "hide_predictions", "lease_ttl_s")
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FRACTION_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_K_FIELD_NUMBER: _ClassVar[int]
    HIDE_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    class_names: _containers.RepeatedScalarFieldContainer[str]
    strategy: str
    overlap_fraction: float
    overlap_k: int
    hide_predictions: bool
    lease_ttl_s: int
    def __init__(self, class_names: _Optional[_Iterable[str]] = ..., strategy: _Optional[str] = ..., overlap_fraction: _Optional[float] = ..., overlap_k: _Optional[int] = ..., hide_predictions: _Optional[bool] = ..., lease_ttl_s: _Optional[int] = ...) -> None: ...

class NextTaskRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Task(_message.Message):
    __slots__ = ("lease_id", "frame_id", "expires_at", "overlap", "score", "source", "frame")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    frame_id: str
    expires_at: _timestamp_pb2.Timestamp
    overlap: bool
    score: _common_pb2.FrameScore
    source: str
    frame: _common_pb2.FrameMeta
    def __init__(self, lease_id: _Optional[str] = ..., frame_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., overlap: _Optional[bool] = ..., score: _Optional[_Union[_common_pb2.FrameScore, _Mapping]] = ..., source: _Optional[str] = ..., frame: _Optional[_Union[_common_pb2.FrameMeta, _Mapping]] = ...) -> None: ...

class SubmitLabelRequest(_message.Message):
    __slots__ = ("request_id", "lease_id", "frame_id", "kind", "label", "seconds_spent")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SECONDS_SPENT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    lease_id: str
    frame_id: str
    kind: _common_pb2.LabelKind
    label: str
    seconds_spent: float
    def __init__(self, request_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., frame_id: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.LabelKind, str]] = ..., label: _Optional[str] = ..., seconds_spent: _Optional[float] = ...) -> None: ...

class SubmitLabelResponse(_message.Message):
    __slots__ = ("label_id", "duplicate", "resolved")
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    duplicate: bool
    resolved: bool
    def __init__(self, label_id: _Optional[str] = ..., duplicate: _Optional[bool] = ..., resolved: _Optional[bool] = ...) -> None: ...

class ReleaseTaskRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class ReleaseTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Adjudication(_message.Message):
    __slots__ = ("frame_id", "votes", "annotators", "reason", "unsure", "frame")
    class VotesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UNSURE_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    votes: _containers.ScalarMap[str, int]
    annotators: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    unsure: int
    frame: _common_pb2.FrameMeta
    def __init__(self, frame_id: _Optional[str] = ..., votes: _Optional[_Mapping[str, int]] = ..., annotators: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., unsure: _Optional[int] = ..., frame: _Optional[_Union[_common_pb2.FrameMeta, _Mapping]] = ...) -> None: ...

class ListAdjudicationsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListAdjudicationsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Adjudication]
    def __init__(self, items: _Optional[_Iterable[_Union[Adjudication, _Mapping]]] = ...) -> None: ...

class AdjudicateRequest(_message.Message):
    __slots__ = ("frame_id", "label", "request_id")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    label: str
    request_id: str
    def __init__(self, frame_id: _Optional[str] = ..., label: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AdjudicateResponse(_message.Message):
    __slots__ = ("resolved",)
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    resolved: bool
    def __init__(self, resolved: _Optional[bool] = ...) -> None: ...

class PairKappa(_message.Message):
    __slots__ = ("a", "b", "kappa", "n")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    KAPPA_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    kappa: float
    n: int
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., kappa: _Optional[float] = ..., n: _Optional[int] = ...) -> None: ...

class AnnotatorAgreement(_message.Message):
    __slots__ = ("annotator", "agreement", "n")
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    annotator: str
    agreement: float
    n: int
    def __init__(self, annotator: _Optional[str] = ..., agreement: _Optional[float] = ..., n: _Optional[int] = ...) -> None: ...

class GetAgreementRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Agreement(_message.Message):
    __slots__ = ("cohen", "fleiss", "fleiss_items", "with_consensus")
    COHEN_FIELD_NUMBER: _ClassVar[int]
    FLEISS_FIELD_NUMBER: _ClassVar[int]
    FLEISS_ITEMS_FIELD_NUMBER: _ClassVar[int]
    WITH_CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    cohen: _containers.RepeatedCompositeFieldContainer[PairKappa]
    fleiss: float
    fleiss_items: int
    with_consensus: _containers.RepeatedCompositeFieldContainer[AnnotatorAgreement]
    def __init__(self, cohen: _Optional[_Iterable[_Union[PairKappa, _Mapping]]] = ..., fleiss: _Optional[float] = ..., fleiss_items: _Optional[int] = ..., with_consensus: _Optional[_Iterable[_Union[AnnotatorAgreement, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DailyCount(_message.Message):
    __slots__ = ("day", "annotator", "count")
    DAY_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    day: str
    annotator: str
    count: int
    def __init__(self, day: _Optional[str] = ..., annotator: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class LabelStats(_message.Message):
    __slots__ = ("submitted", "resolved", "pending_adjudication", "active_leases", "per_day", "per_annotator", "per_class", "frames", "per_kind")
    class PerAnnotatorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class PerClassEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class PerKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    PENDING_ADJUDICATION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_LEASES_FIELD_NUMBER: _ClassVar[int]
    PER_DAY_FIELD_NUMBER: _ClassVar[int]
    PER_ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    PER_KIND_FIELD_NUMBER: _ClassVar[int]
    submitted: int
    resolved: int
    pending_adjudication: int
    active_leases: int
    per_day: _containers.RepeatedCompositeFieldContainer[DailyCount]
    per_annotator: _containers.ScalarMap[str, int]
    per_class: _containers.ScalarMap[str, int]
    frames: int
    per_kind: _containers.ScalarMap[str, int]
    def __init__(self, submitted: _Optional[int] = ..., resolved: _Optional[int] = ..., pending_adjudication: _Optional[int] = ..., active_leases: _Optional[int] = ..., per_day: _Optional[_Iterable[_Union[DailyCount, _Mapping]]] = ..., per_annotator: _Optional[_Mapping[str, int]] = ..., per_class: _Optional[_Mapping[str, int]] = ..., frames: _Optional[int] = ..., per_kind: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListResolvedRequest(_message.Message):
    __slots__ = ("after_sequence", "limit")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    limit: int
    def __init__(self, after_sequence: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ResolvedLabel(_message.Message):
    __slots__ = ("frame_id", "label", "sequence")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    label: str
    sequence: int
    def __init__(self, frame_id: _Optional[str] = ..., label: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class ListResolvedResponse(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[ResolvedLabel]
    def __init__(self, labels: _Optional[_Iterable[_Union[ResolvedLabel, _Mapping]]] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("format",)
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    format: ExportFormat
    def __init__(self, format: _Optional[_Union[ExportFormat, str]] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("data", "content_type", "filename")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    filename: str
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., filename: _Optional[str] = ...) -> None: ...
