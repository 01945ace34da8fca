"""Cross-cutting concerns of every call: the request id, request parsing, and errors → status codes.

This is the one place where the exception tree meets gRPC status codes.

Requests are parsed here, not by grpc. grpc.aio reports a request that fails to deserialize as
UNKNOWN ("Unexpected DecodeError"), whatever its deserializer raises, and before any interceptor code
runs on the request. So every handler is given to grpc with its deserializer swapped: unary requests
arrive as raw bytes and are parsed inside the guarded call, before authentication (a corrupt body is
INVALID_ARGUMENT for every caller); streamed requests are parsed as the servicer reads them, by a
deserializer whose failure is an :class:`~gateway.core.errors.InvalidInput` the guard maps like any other.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.core import errors
from gateway.routing.request_ids import REQUEST_ID_HEADER, request_id_from
from policies.model import Tenant

log = structlog.get_logger(__name__)

# gRPC's own retry machinery reads this trailer; clients without it read google.rpc.RetryInfo.
RETRY_PUSHBACK_HEADER = "grpc-retry-pushback-ms"

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
tenant_var: contextvars.ContextVar[Tenant | None] = contextvars.ContextVar("tenant", default=None)

# Health and reflection stay open: probes and tooling carry no API key.
AUTHENTICATED_PREFIX = "/gateway."


def status_for(exc: errors.GatewayError) -> grpc.StatusCode:
    return grpc.StatusCode[errors.status_name(exc)]


def _incoming_request_id(metadata: Metadata) -> str:
    sent = (value for key, value in metadata if key == REQUEST_ID_HEADER)
    return request_id_from(next(sent, None))


Behaviour = Callable[[Any, grpc.aio.ServicerContext], Any]
Deserializer = Callable[[bytes], Any]
Metadata = tuple[tuple[str, str | bytes], ...]
Authenticator = Callable[[Metadata], Tenant]


def _metadata(context: grpc.aio.ServicerContext) -> Metadata:
    return tuple(context.invocation_metadata() or ())


def retry_trailers(code: grpc.StatusCode, message: str, retry_after_s: float) -> tuple[tuple[str, Any], ...]:
    """Trailing metadata that tells a client when to retry: a ``google.rpc.Status`` carrying
    ``RetryInfo`` (``grpc-status-details-bin``) and gRPC's own ``grpc-retry-pushback-ms``, which is -1
    ("do not retry", gRFC A6) when the wait is too long for a retry policy to sit through."""
    delay_ms = max(round(retry_after_s * 1000), 1)
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromMilliseconds(delay_ms)
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(info)
    pushback = str(delay_ms) if retry_after_s <= errors.AUTOMATIC_RETRY_MAX_S else "-1"
    return (*rpc_status.to_status(status).trailing_metadata, (RETRY_PUSHBACK_HEADER, pushback))


async def _abort(context: grpc.aio.ServicerContext, exc: errors.GatewayError, request_id: str) -> None:
    """Ends the call with ``exc``'s status (``context.abort`` raises)."""
    code = status_for(exc)
    message = str(exc)
    log.info("request.rejected", status=code.name, kind=exc.kind)
    trailers = () if exc.retry_after_s is None else retry_trailers(code, message, exc.retry_after_s)
    await context.abort(code, message, trailing_metadata=(*trailers, (REQUEST_ID_HEADER, request_id)))


def checked(deserializer: Deserializer) -> Deserializer:
    """``deserializer``, with a request that does not parse reported as the caller's fault."""
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", "request message")

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            # upb says "Error parsing message with type '…': <what>"; the what is the useful part.
            reason = str(exc).rpartition("': ")[2] or "the bytes do not parse"
            raise errors.InvalidInput(
                f"the request is not a valid {name}: {errors.clip(reason)}; encode it with the "
                "message types of this service's .proto (string fields must be valid UTF-8)"
            ) from None

    return parse


class RequestInterceptor(grpc.aio.ServerInterceptor):
    """Binds the request id and tenant into logs and response metadata; parses requests so that a
    malformed one is INVALID_ARGUMENT; maps errors to statuses. Every kind of handler, every service."""

    def __init__(self, authenticate: Authenticator | None = None) -> None:
        self._authenticate = authenticate
        # The wrapped handler of each method, built on its first call: building it is most of what this
        # interceptor would otherwise cost per call. Only methods that exist are kept (the dict is bounded
        # by the services), so callers naming random methods cannot grow it.
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = self._wrapped[method] = self._wrap(method, handler)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        authenticate = self._authenticate if method.startswith(AUTHENTICATED_PREFIX) else None
        call = _GuardedCall(method, authenticate)
        parse = None if handler.request_deserializer is None else checked(handler.request_deserializer)
        serializer = handler.response_serializer
        # Unary requests reach the wrapper as bytes (no deserializer), streamed ones parsed by ``parse``.
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                call.unary(handler.unary_unary, parse), response_serializer=serializer
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                call.streaming(handler.unary_stream, parse), response_serializer=serializer
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                call.unary(handler.stream_unary, None),
                request_deserializer=parse,
                response_serializer=serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            call.streaming(handler.stream_stream, None),
            request_deserializer=parse,
            response_serializer=serializer,
        )


class _GuardedCall:
    """What every call of one method runs around its behaviour."""

    def __init__(self, method: str, authenticate: Authenticator | None) -> None:
        self._method = method
        self._authenticate = authenticate

    def unary(self, behaviour: Behaviour, parse: Deserializer | None) -> Behaviour:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = _metadata(context)
            async with self._guarded(context, metadata, streaming=False):
                return await behaviour(self._admit(request, parse, metadata), context)

        return call

    def streaming(self, behaviour: Behaviour, parse: Deserializer | None) -> Behaviour:
        # Always the writer form (context.write), whatever the behaviour's form: an async generator of
        # ours would be finalised outside this call's context when a client leaves mid-stream.
        async def call(request: Any, context: grpc.aio.ServicerContext) -> None:
            metadata = _metadata(context)
            async with self._guarded(context, metadata, streaming=True):
                responses = behaviour(self._admit(request, parse, metadata), context)
                if not inspect.isasyncgen(responses):
                    await responses
                    return
                async with contextlib.aclosing(responses):
                    async for response in responses:
                        await context.write(response)

        return call

    def _admit(self, request: Any, parse: Deserializer | None, metadata: Metadata) -> Any:
        """Parse (a malformed request is the caller's fault, key or no key), then authenticate."""
        if parse is not None:
            request = parse(request)
        if self._authenticate is not None:
            tenant = self._authenticate(metadata)
            tenant_var.set(tenant)
            structlog.contextvars.bind_contextvars(tenant=tenant.name)
        return request

    @contextlib.asynccontextmanager
    async def _guarded(
        self, context: grpc.aio.ServicerContext, metadata: Metadata, *, streaming: bool
    ) -> AsyncIterator[None]:
        request_id = _incoming_request_id(metadata)
        token = request_id_var.set(request_id)
        tenant_token = tenant_var.set(None)
        with structlog.contextvars.bound_contextvars(request_id=request_id, method=self._method):
            try:
                # Every call's trailers carry the id; they leave with the status in one batch. Custom
                # initial metadata is a batch (a write, a wake-up of the client) of its own, about a third
                # of a cache hit's throughput: only a stream, whose caller may want the id before the end,
                # pays for it.
                context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
                if streaming:
                    await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
                yield
            except errors.GatewayError as exc:
                await _abort(context, exc, request_id)
            except grpc.aio.AbortError:
                raise
            except Exception:
                # A bug, not the caller's fault: log it whole, tell the caller only the id.
                log.exception("request.crashed")
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"internal error; quote request id {request_id} when reporting it",
                    trailing_metadata=((REQUEST_ID_HEADER, request_id),),
                )
            finally:
                tenant_var.reset(tenant_token)
                request_id_var.reset(token)
