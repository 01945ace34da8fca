from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GroupBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUP_BY_UNSPECIFIED: _ClassVar[GroupBy]
    GROUP_BY_DAY: _ClassVar[GroupBy]
    GROUP_BY_TENANT: _ClassVar[GroupBy]
    GROUP_BY_PROVIDER: _ClassVar[GroupBy]
    GROUP_BY_OPERATION: _ClassVar[GroupBy]
GROUP_BY_UNSPECIFIED: GroupBy
GROUP_BY_DAY: GroupBy
GROUP_BY_TENANT: GroupBy
GROUP_BY_PROVIDER: GroupBy
GROUP_BY_OPERATION: GroupBy

class GetCostReportRequest(_message.Message):
    __slots__ = ("tenant", "since", "until", "group_by")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    since: str
    until: str
    group_by: _containers.RepeatedScalarFieldContainer[GroupBy]
    def __init__(self, tenant: _Optional[str] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., group_by: _Optional[_Iterable[_Union[GroupBy, str]]] = ...) -> None: ...

class Units(_message.Message):
    __slots__ = ("audio_seconds", "characters", "input_tokens", "audio_input_tokens", "output_tokens", "compute_seconds")
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    audio_seconds: float
    characters: int
    input_tokens: int
    audio_input_tokens: int
    output_tokens: int
    compute_seconds: float
    def __init__(self, audio_seconds: _Optional[float] = ..., characters: _Optional[int] = ..., input_tokens: _Optional[int] = ..., audio_input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., compute_seconds: _Optional[float] = ...) -> None: ...

class CostReportRow(_message.Message):
    __slots__ = ("day", "tenant", "provider", "operation", "requests", "attempts", "failures", "cache_hits", "cost_usd", "saved_usd", "counterfactual_cloud_usd", "counterfactual_local_usd", "units")
    DAY_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    SAVED_USD_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACTUAL_CLOUD_USD_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACTUAL_LOCAL_USD_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    day: str
    tenant: str
    provider: str
    operation: str
    requests: int
    attempts: int
    failures: int
    cache_hits: int
    cost_usd: str
    saved_usd: str
    counterfactual_cloud_usd: str
    counterfactual_local_usd: str
    units: Units
    def __init__(self, day: _Optional[str] = ..., tenant: _Optional[str] = ..., provider: _Optional[str] = ..., operation: _Optional[str] = ..., requests: _Optional[int] = ..., attempts: _Optional[int] = ..., failures: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cost_usd: _Optional[str] = ..., saved_usd: _Optional[str] = ..., counterfactual_cloud_usd: _Optional[str] = ..., counterfactual_local_usd: _Optional[str] = ..., units: _Optional[_Union[Units, _Mapping]] = ...) -> None: ...

class CostReport(_message.Message):
    __slots__ = ("since", "until", "group_by", "rows", "total", "price_book_version")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PRICE_BOOK_VERSION_FIELD_NUMBER: _ClassVar[int]
    since: str
    until: str
    group_by: _containers.RepeatedScalarFieldContainer[GroupBy]
    rows: _containers.RepeatedCompositeFieldContainer[CostReportRow]
    total: CostReportRow
    price_book_version: str
    def __init__(self, since: _Optional[str] = ..., until: _Optional[str] = ..., group_by: _Optional[_Iterable[_Union[GroupBy, str]]] = ..., rows: _Optional[_Iterable[_Union[CostReportRow, _Mapping]]] = ..., total: _Optional[_Union[CostReportRow, _Mapping]] = ..., price_book_version: _Optional[str] = ...) -> None: ...
