"""Who is calling, and under which request id: what every endpoint learns before it reads a body.

The request id is the caller's ``x-request-id`` when it is tame, else a fresh one, bound into the logs
and returned in the response's ``x-request-id`` (which the OpenAI SDKs expose as ``_request_id``). The
API key (``Authorization: Bearer …``) maps to a tenant with the code the gRPC door uses. Authentication
happens before any upload is read, so an unknown key never costs the gateway a 25 MB body.

The OpenAI SDKs say how long they will wait for an answer (Python ``x-stainless-read-timeout``, Node
``x-stainless-timeout``, in seconds). An answer that is computed whole before its first byte goes out
(transcripts, chat) gets that long and no longer, as a gRPC deadline bounds a gRPC call: work the caller
has given up on is not done, nor billed. Speech streams as it is spoken, and the SDKs' timeouts end at
the first byte, so it keeps the gateway's own timeout.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

import structlog
from fastapi import Depends, Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.app import App
from gateway.routing.auth import authenticate
from gateway.routing.pipeline import RequestContext
from gateway.routing.request_ids import REQUEST_ID_HEADER, request_id_from


class RequestIds:
    """ASGI middleware: the request id in the scope's state, the logs and the response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        method = f"{scope.get('method', '')} {scope.get('path', '')}"
        with structlog.contextvars.bound_contextvars(request_id=request_id, method=method):
            await self.app(scope, receive, send_with_id)


def gateway_of(request: Request) -> App:
    gateway: App = request.app.state.gateway
    return gateway


CLIENT_TIMEOUT_HEADERS = ("x-stainless-read-timeout", "x-stainless-timeout")


def client_timeout_s(headers: Headers) -> float | None:
    """The shortest wait the caller announced, in seconds; None when it announced none that makes sense."""
    announced = []
    for name in CLIENT_TIMEOUT_HEADERS:
        try:
            seconds = float(headers.get(name, "")[:32])
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds > 0:
            announced.append(seconds)
    return min(announced, default=None)


def _context(request: Request, timeout_s: float) -> RequestContext:
    gateway = gateway_of(request)
    tenant = authenticate(gateway.policies.book, request.headers.items(), carrier="header")
    structlog.contextvars.bind_contextvars(tenant=tenant.name)
    return RequestContext(
        request_id=request.state.request_id, deadline=time.monotonic() + timeout_s, tenant=tenant
    )


async def caller(request: Request) -> RequestContext:
    """A FastAPI dependency: the authenticated caller's request context (tenant, id, deadline)."""
    default_s = gateway_of(request).settings.default_timeout_s
    announced_s = client_timeout_s(request.headers)
    return _context(request, default_s if announced_s is None else min(default_s, announced_s))


async def streaming_caller(request: Request) -> RequestContext:
    """As ``caller``, for answers that stream as they are made: the gateway's own timeout bounds them."""
    return _context(request, gateway_of(request).settings.default_timeout_s)


# An endpoint parameter typed ``Caller`` is the authenticated caller's context.
Caller = Annotated[RequestContext, Depends(caller)]
StreamingCaller = Annotated[RequestContext, Depends(streaming_caller)]
