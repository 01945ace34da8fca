"""The gateway's exception tree. Status codes are assigned in one place
(:mod:`gateway.grpc.interceptors`); everything else raises these.

::

    GatewayError
    ├── InvalidInput            bad audio, text, voice, format, question   → INVALID_ARGUMENT
    │   └── UnsupportedAudio    bytes that are not decodable audio          → INVALID_ARGUMENT
    ├── LimitExceeded           audio or text over a configured limit       → RESOURCE_EXHAUSTED
    ├── Unauthenticated         missing or unknown credentials              → UNAUTHENTICATED
    ├── PermissionDenied        credentials lack the right                  → PERMISSION_DENIED
    ├── NoRoute                 no provider satisfies the request/policy    → FAILED_PRECONDITION
    ├── NotReady                engines still loading                       → UNAVAILABLE
    ├── DependencyUnavailable   e.g. the shared budget store is unreachable → UNAVAILABLE
    ├── AllAttemptsFailed       every candidate failed                      → UNAVAILABLE
    │   └── DeadlineExceeded    ...and every failure was the deadline       → DEADLINE_EXCEEDED
    └── ProviderError           one attempt failed (router-internal)
        ├── ProviderTimeout         deadline hit               (retryable)
        ├── ProviderUnavailable     5xx, 429, reset, overload  (retryable)
        ├── ProviderBadResponse     malformed reply            (retryable)
        └── ProviderRejected        4xx the caller can't fix by retrying elsewhere (not retryable)

``ProviderError`` never reaches a caller on its own: the router collects the
attempts and raises :class:`AllAttemptsFailed`, or re-raises an input error
that a provider detected (e.g. an unknown voice) as :class:`InvalidInput`.
"""

from __future__ import annotations

from dataclasses import dataclass

# How much of a caller-supplied name (a path, a MIME type) a message may echo: enough to recognise it,
# never enough to turn an error reply into an amplifier for whatever the caller sent.
ECHO_CHARS = 100


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters (the cut marked with "…"), for echoing in a message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose. ``str(err)`` is safe to show callers."""

    kind = "error"


class InvalidInput(GatewayError):
    kind = "invalid_input"


class UnsupportedAudio(InvalidInput):
    kind = "unsupported_audio"


class LimitExceeded(GatewayError):
    kind = "limit_exceeded"


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


# The one mapping from this tree to gRPC status code names, most specific first.
# Kept as names so the core can report statuses (metrics, ledger) without importing gRPC.
STATUS_BY_ERROR: tuple[tuple[type[GatewayError], str], ...] = (
    (InvalidInput, "INVALID_ARGUMENT"),
    (LimitExceeded, "RESOURCE_EXHAUSTED"),
    (Unauthenticated, "UNAUTHENTICATED"),
    (PermissionDenied, "PERMISSION_DENIED"),
    (NoRoute, "FAILED_PRECONDITION"),
    (NotReady, "UNAVAILABLE"),
    (DependencyUnavailable, "UNAVAILABLE"),
    (DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (AllAttemptsFailed, "UNAVAILABLE"),
    (ProviderError, "UNAVAILABLE"),
)


def status_name(exc: BaseException) -> str:
    """The gRPC status a caller sees for ``exc``; INTERNAL for anything outside the tree."""
    for error_type, name in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return name
    return "INTERNAL"
