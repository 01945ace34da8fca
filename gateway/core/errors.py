"""The gateway's exception tree, and the one table (:data:`CLASSIFICATION`) that says what each error is
to a caller: its gRPC status, and its HTTP status with OpenAI's error type and code. Both doors read the
table; everything else raises these.

::

    GatewayError
    ├── InvalidInput            bad audio, text, voice, format, question   → INVALID_ARGUMENT
    │   ├── UnsupportedAudio    bytes that are not decodable audio          → INVALID_ARGUMENT
    │   └── UnknownModel        a policy or provider asked for by name      → INVALID_ARGUMENT (HTTP 404)
    ├── LimitExceeded           audio or text over a configured limit       → RESOURCE_EXHAUSTED (HTTP 413)
    │   ├── Overloaded          at a concurrency cap, or every engine busy  → RESOURCE_EXHAUSTED + RetryInfo
    │   └── BudgetExhausted     the tenant's monthly budget is spent        → RESOURCE_EXHAUSTED + RetryInfo
    ├── Unauthenticated         missing or unknown credentials              → UNAUTHENTICATED
    ├── PermissionDenied        credentials lack the right                  → PERMISSION_DENIED
    ├── NoRoute                 no provider satisfies the request/policy    → FAILED_PRECONDITION
    ├── NotReady                engines still loading                       → UNAVAILABLE
    ├── Recovering              every eligible breaker half-open, probe out → UNAVAILABLE
    ├── DependencyUnavailable   e.g. the shared budget store is unreachable → UNAVAILABLE
    ├── AllAttemptsFailed       every candidate failed                      → UNAVAILABLE
    │   └── DeadlineExceeded    ...and every failure was the deadline       → DEADLINE_EXCEEDED
    └── ProviderError           one attempt failed (router-internal)
        ├── ProviderTimeout         deadline hit               (retryable)
        ├── ProviderUnavailable     5xx, 429, reset, overload  (retryable)
        ├── ProviderBadResponse     malformed reply            (retryable)
        ├── ProviderBusy            its work queue is full     (retryable; all busy → Overloaded)
        └── ProviderRejected        4xx the caller can't fix by retrying elsewhere (not retryable)

``ProviderError`` never reaches a caller on its own: the router collects the
attempts and raises :class:`AllAttemptsFailed`, or re-raises an input error
that a provider detected (e.g. an unknown voice) as :class:`InvalidInput`.

An error whose ``retry_after_s`` is set tells the caller when a retry may succeed (gRPC ``RetryInfo``,
HTTP ``Retry-After``).
Messages echo caller-supplied names only through :func:`clip`, so a megabyte "voice" stays out of them.
"""

from __future__ import annotations

from dataclasses import dataclass

# A retry hint longer than this is not for a client's automatic retries (a budget renews next month): the
# doors tell clients not to retry on their own (gRPC pushback -1, HTTP x-should-retry: false).
AUTOMATIC_RETRY_MAX_S = 60.0

# How much of a caller-supplied name (a path, a MIME type) a message may echo: enough to recognise it,
# never enough to turn an error reply into an amplifier for whatever the caller sent.
ECHO_CHARS = 100


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters (the cut marked with "…"), for echoing in a message."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose. ``str(err)`` is safe to show callers."""

    kind = "error"
    # Seconds after which a retry may succeed; None when waiting would not help.
    retry_after_s: float | None = None


class InvalidInput(GatewayError):
    kind = "invalid_input"


class UnsupportedAudio(InvalidInput):
    kind = "unsupported_audio"


class LimitExceeded(GatewayError):
    kind = "limit_exceeded"


class UnknownModel(InvalidInput):
    """A name the caller chose a route by (a policy, a provider) that this gateway does not have."""

    kind = "unknown_model"


class Overloaded(LimitExceeded):
    """Refused for load, not for anything wrong with the request: the same call may succeed later."""

    kind = "overloaded"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BudgetExhausted(LimitExceeded):
    """The tenant's monthly budget cannot pay for the request; ``retry_after_s``: until the budget renews."""

    kind = "budget_exceeded"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unauthenticated(GatewayError):
    kind = "unauthenticated"


class PermissionDenied(GatewayError):
    kind = "permission_denied"


@dataclass(frozen=True)
class Rejection:
    provider: str
    reason: str


class NoRoute(GatewayError):
    kind = "no_route"

    def __init__(self, message: str, rejections: tuple[Rejection, ...] = ()) -> None:
        detail = "; ".join(f"{r.provider}: {r.reason}" for r in rejections)
        super().__init__(f"{message} ({detail})" if detail else message)
        self.rejections = rejections


class NotReady(GatewayError):
    kind = "not_ready"


class Recovering(GatewayError):
    """Every eligible provider is half-open with its one probe in flight: transient, unlike NoRoute."""

    kind = "recovering"


class DependencyUnavailable(GatewayError):
    """A store the request cannot safely go without (e.g. the shared budget) is unreachable."""

    kind = "dependency_unavailable"


class ProviderError(GatewayError):
    kind = "provider_error"
    retryable = False

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderTimeout(ProviderError):
    kind = "timeout"
    retryable = True


class ProviderUnavailable(ProviderError):
    kind = "unavailable"
    retryable = True


class ProviderBadResponse(ProviderError):
    kind = "bad_response"
    retryable = True


class ProviderBusy(ProviderError):
    """The provider's queue is full; another candidate may have room, or this one shortly."""

    kind = "busy"
    retryable = True

    def __init__(self, provider: str, message: str, retry_after_s: float) -> None:
        super().__init__(provider, message)
        self.retry_after_s = retry_after_s


class ProviderRejected(ProviderError):
    kind = "rejected"
    retryable = False


class ProviderInputError(ProviderError):
    """The provider found the caller's input invalid (e.g. an unknown voice): surfaced as InvalidInput."""

    kind = "invalid_input"
    retryable = False


class AllAttemptsFailed(GatewayError):
    kind = "all_attempts_failed"

    def __init__(self, errors: list[ProviderError]) -> None:
        listing = "; ".join(f"[{e.kind}] {e}" for e in errors)
        super().__init__(f"every attempt failed: {listing}")
        self.errors = errors


class DeadlineExceeded(AllAttemptsFailed):
    kind = "deadline_exceeded"


class WaitTimedOut(GatewayError):
    """The deadline passed while waiting on an identical request's computation: nobody's fault but time's."""

    kind = "deadline_exceeded"


def overloaded_if_all_busy(errors: list[ProviderError]) -> Overloaded | None:
    """The caller's error when every attempt found its provider busy: retry when the first frees up."""
    busy = [e for e in errors if isinstance(e, ProviderBusy)]
    if not errors or len(busy) != len(errors):
        return None
    listing = "; ".join(str(e) for e in busy)
    wait_s = min(e.retry_after_s for e in busy)
    return Overloaded(f"every provider for this request is busy ({listing}); retry in {wait_s:g} s", wait_s)


@dataclass(frozen=True)
class Classification:
    """What an error is to a caller, whichever door it came in by.

    ``grpc_status`` is a ``grpc.StatusCode`` name (kept as a name so the core can report statuses in
    metrics and the ledger without importing gRPC); ``http_status``, ``openai_type`` and ``openai_code``
    fill OpenAI's error envelope on the HTTP door.
    """

    grpc_status: str
    http_status: int
    openai_type: str
    openai_code: str | None = None


_INVALID = "invalid_request_error"

# The one classification of this tree, most specific first.
CLASSIFICATION: tuple[tuple[type[GatewayError], Classification], ...] = (
    (UnknownModel, Classification("INVALID_ARGUMENT", 404, _INVALID, "model_not_found")),
    (UnsupportedAudio, Classification("INVALID_ARGUMENT", 400, _INVALID, "invalid_audio")),
    (InvalidInput, Classification("INVALID_ARGUMENT", 400, _INVALID, "invalid_value")),
    (Overloaded, Classification("RESOURCE_EXHAUSTED", 429, "rate_limit_error", "rate_limit_exceeded")),
    (BudgetExhausted, Classification("RESOURCE_EXHAUSTED", 429, "insufficient_quota", "insufficient_quota")),
    (LimitExceeded, Classification("RESOURCE_EXHAUSTED", 413, _INVALID, "request_too_large")),
    (Unauthenticated, Classification("UNAUTHENTICATED", 401, _INVALID, "invalid_api_key")),
    (PermissionDenied, Classification("PERMISSION_DENIED", 403, "permission_error", "permission_denied")),
    (NoRoute, Classification("FAILED_PRECONDITION", 400, _INVALID, "no_route")),
    (NotReady, Classification("UNAVAILABLE", 503, "server_error", "not_ready")),
    (Recovering, Classification("UNAVAILABLE", 503, "server_error", "recovering")),
    (DependencyUnavailable, Classification("UNAVAILABLE", 503, "server_error", "dependency_unavailable")),
    (DeadlineExceeded, Classification("DEADLINE_EXCEEDED", 504, "server_error", "timeout")),
    (WaitTimedOut, Classification("DEADLINE_EXCEEDED", 504, "server_error", "timeout")),
    (AllAttemptsFailed, Classification("UNAVAILABLE", 503, "server_error", "all_attempts_failed")),
    # Router-internal; should one escape, the caller still learns it is load, not an outage.
    (ProviderBusy, Classification("RESOURCE_EXHAUSTED", 429, "rate_limit_error", "rate_limit_exceeded")),
    (ProviderError, Classification("UNAVAILABLE", 503, "server_error", "provider_error")),
)
# Anything outside the tree is a bug: the caller learns only that, and the request id.
INTERNAL = Classification("INTERNAL", 500, "server_error", "internal_error")


def classify(exc: BaseException) -> Classification:
    for error_type, classification in CLASSIFICATION:
        if isinstance(exc, error_type):
            return classification
    return INTERNAL


def status_name(exc: BaseException) -> str:
    """The gRPC status a caller sees for ``exc``; INTERNAL for anything outside the tree."""
    return classify(exc).grpc_status
