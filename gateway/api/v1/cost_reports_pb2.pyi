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
    __slots__ = ("day", "tenant", "provider", "operation", "requests", "attempts", "failures", "cache_hits", "cost_usd", "saved_usd", "counterfactual_cloud_usd", "counterfactual_local_usd", "units", "possibly_billed_usd", "billing_unknown_attempts")
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
    POSSIBLY_BILLED_USD_FIELD_NUMBER: _ClassVar[int]
    BILLING_UNKNOWN_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
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
    possibly_billed_usd: str
    billing_unknown_attempts: int
    def __init__(self, day: _Optional[str] = ..., tenant: _Optional[str] = ..., provider: _Optional[str] = ..., operation: _Optional[str] = ..., requests: _Optional[int] = ..., attempts: _Optional[int] = ..., failures: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cost_usd: _Optional[str] = ..., saved_usd: _Optional[str] = ..., counterfactual_cloud_usd: _Optional[str] = ..., counterfactual_local_usd: _Optional[str] = ..., units: _Optional[_Union[Units, _Mapping]] = ..., possibly_billed_usd: _Optional[str] = ..., billing_unknown_attempts: _Optional[int] = ...) -> None: ...

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

class FindRecordsRequest(_message.Message):
    __slots__ = ("request_id", "tenant")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tenant: str
    def __init__(self, request_id: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class LedgerRecord(_message.Message):
    __slots__ = ("record_id", "request_key", "request_id", "kind", "tenant", "operation", "provider", "model", "locality", "outcome", "cost_usd", "saved_usd", "cache_hit", "billing_unknown", "possibly_billed_usd", "latency_ms", "timestamp")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    SAVED_USD_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    BILLING_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    POSSIBLY_BILLED_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    request_key: str
    request_id: str
    kind: str
    tenant: str
    operation: str
    provider: str
    model: str
    locality: str
    outcome: str
    cost_usd: str
    saved_usd: str
    cache_hit: bool
    billing_unknown: bool
    possibly_billed_usd: str
    latency_ms: float
    timestamp: float
    def __init__(self, record_id: _Optional[str] = ..., request_key: _Optional[str] = ..., request_id: _Optional[str] = ..., kind: _Optional[str] = ..., tenant: _Optional[str] = ..., operation: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., locality: _Optional[str] = ..., outcome: _Optional[str] = ..., cost_usd: _Optional[str] = ..., saved_usd: _Optional[str] = ..., cache_hit: _Optional[bool] = ..., billing_unknown: _Optional[bool] = ..., possibly_billed_usd: _Optional[str] = ..., latency_ms: _Optional[float] = ..., timestamp: _Optional[float] = ...) -> None: ...

class FindRecordsResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[LedgerRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[LedgerRecord, _Mapping]]] = ...) -> None: ...
