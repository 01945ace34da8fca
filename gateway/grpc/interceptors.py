"""Cross-cutting concerns of every call: the request id, and errors → status codes.

This is the one place where the exception tree meets gRPC status codes.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog

from gateway.core import errors
from policies.model import Tenant

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"
# Caller-chosen ids are echoed into logs and metadata, so keep them tame.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
tenant_var: contextvars.ContextVar[Tenant | None] = contextvars.ContextVar("tenant", default=None)

# Health and reflection stay open: probes and tooling carry no API key.
AUTHENTICATED_PREFIX = "/gateway."


def status_for(exc: errors.GatewayError) -> grpc.StatusCode:
    return grpc.StatusCode[errors.status_name(exc)]


def _incoming_request_id(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _VALID_REQUEST_ID.match(value):
            return value
    return uuid.uuid4().hex


Behaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Authenticator = Callable[[tuple[tuple[str, str | bytes], ...]], Tenant]


class RequestInterceptor(grpc.aio.ServerInterceptor):
    """Binds the request id and tenant into logs and response metadata; maps errors to statuses."""

    def __init__(self, authenticate: Authenticator | None = None) -> None:
        self._authenticate = authenticate

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        # Streaming handlers (health Watch, reflection) pass through untouched.
        if handler is None or handler.unary_unary is None:
            return handler
        authenticate = (
            self._authenticate if handler_call_details.method.startswith(AUTHENTICATED_PREFIX) else None
        )
        wrapped = self._wrap(handler.unary_unary, handler_call_details, authenticate)
        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    @staticmethod
    def _wrap(
        behaviour: Behaviour, details: grpc.HandlerCallDetails, authenticate: Authenticator | None
    ) -> Behaviour:
        method = details.method

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            request_id = _incoming_request_id(details)
            token = request_id_var.set(request_id)
            tenant_token = tenant_var.set(None)
            with structlog.contextvars.bound_contextvars(request_id=request_id, method=method):
                try:
                    await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
                    if authenticate is not None:
                        tenant = authenticate(tuple(details.invocation_metadata or ()))
                        tenant_var.set(tenant)
                        structlog.contextvars.bind_contextvars(tenant=tenant.name)
                    return await behaviour(request, context)
                except errors.GatewayError as exc:
                    code = status_for(exc)
                    log.info("request.rejected", status=code.name, kind=exc.kind)
                    await context.abort(code, str(exc))
                except grpc.aio.AbortError:
                    raise
                except Exception:
                    # A bug, not the caller's fault: log it whole, tell the caller only the id.
                    log.exception("request.crashed")
                    await context.abort(
                        grpc.StatusCode.INTERNAL,
                        f"internal error; quote request id {request_id} when reporting it",
                    )
                finally:
                    tenant_var.reset(tenant_token)
                    request_id_var.reset(token)

        return call
