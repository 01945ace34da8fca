from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Privacy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIVACY_UNSPECIFIED: _ClassVar[Privacy]
    PRIVACY_LOCAL_ONLY: _ClassVar[Privacy]
    PRIVACY_ON_PREM: _ClassVar[Privacy]
    PRIVACY_ANY: _ClassVar[Privacy]

class Objective(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECTIVE_UNSPECIFIED: _ClassVar[Objective]
    OBJECTIVE_COST: _ClassVar[Objective]
    OBJECTIVE_LATENCY: _ClassVar[Objective]
    OBJECTIVE_QUALITY: _ClassVar[Objective]

class CacheMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_MODE_UNSPECIFIED: _ClassVar[CacheMode]
    CACHE_MODE_BYPASS: _ClassVar[CacheMode]
    CACHE_MODE_REFRESH: _ClassVar[CacheMode]

class Locality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCALITY_UNSPECIFIED: _ClassVar[Locality]
    LOCALITY_LOCAL: _ClassVar[Locality]
    LOCALITY_ON_PREM: _ClassVar[Locality]
    LOCALITY_CLOUD: _ClassVar[Locality]
PRIVACY_UNSPECIFIED: Privacy
PRIVACY_LOCAL_ONLY: Privacy
PRIVACY_ON_PREM: Privacy
PRIVACY_ANY: Privacy
OBJECTIVE_UNSPECIFIED: Objective
OBJECTIVE_COST: Objective
OBJECTIVE_LATENCY: Objective
OBJECTIVE_QUALITY: Objective
CACHE_MODE_UNSPECIFIED: CacheMode
CACHE_MODE_BYPASS: CacheMode
CACHE_MODE_REFRESH: CacheMode
LOCALITY_UNSPECIFIED: Locality
LOCALITY_LOCAL: Locality
LOCALITY_ON_PREM: Locality
LOCALITY_CLOUD: Locality

class Audio(_message.Message):
    __slots__ = ("content", "uri", "mime_type")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    uri: str
    mime_type: str
    def __init__(self, content: _Optional[bytes] = ..., uri: _Optional[str] = ..., mime_type: _Optional[str] = ...) -> None: ...

class RoutingOptions(_message.Message):
    __slots__ = ("policy", "privacy", "objective", "max_cost_usd", "max_latency_ms", "provider", "cache")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_USD_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    policy: str
    privacy: Privacy
    objective: Objective
    max_cost_usd: float
    max_latency_ms: int
    provider: str
    cache: CacheMode
    def __init__(self, policy: _Optional[str] = ..., privacy: _Optional[_Union[Privacy, str]] = ..., objective: _Optional[_Union[Objective, str]] = ..., max_cost_usd: _Optional[float] = ..., max_latency_ms: _Optional[int] = ..., provider: _Optional[str] = ..., cache: _Optional[_Union[CacheMode, str]] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("provider", "model", "operation", "outcome", "error", "latency_ms", "cost_usd", "billing_unknown", "possibly_billed_usd")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    BILLING_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    POSSIBLY_BILLED_USD_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    operation: str
    outcome: str
    error: str
    latency_ms: float
    cost_usd: str
    billing_unknown: bool
    possibly_billed_usd: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., operation: _Optional[str] = ..., outcome: _Optional[str] = ..., error: _Optional[str] = ..., latency_ms: _Optional[float] = ..., cost_usd: _Optional[str] = ..., billing_unknown: _Optional[bool] = ..., possibly_billed_usd: _Optional[str] = ...) -> None: ...

class RouteInfo(_message.Message):
    __slots__ = ("request_id", "provider", "model", "locality", "cache_hit", "cost_usd", "saved_usd", "latency_ms", "attempts", "policy")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    SAVED_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    provider: str
    model: str
    locality: Locality
    cache_hit: bool
    cost_usd: str
    saved_usd: str
    latency_ms: float
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    policy: str
    def __init__(self, request_id: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., locality: _Optional[_Union[Locality, str]] = ..., cache_hit: _Optional[bool] = ..., cost_usd: _Optional[str] = ..., saved_usd: _Optional[str] = ..., latency_ms: _Optional[float] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., policy: _Optional[str] = ...) -> None: ...
