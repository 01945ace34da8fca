"""``create_http_app(app)``: the OpenAI-compatible API over an assembled gateway.

Endpoints live one module each, each with its own ``APIRouter``; adding an endpoint is adding its
router to :data:`ROUTERS`.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from gateway.app import App
from gateway.http import chat, models, speech, transcriptions
from gateway.http.callers import RequestIds
from gateway.http.errors import install_error_handlers

ROUTERS: tuple[APIRouter, ...] = (models.router, transcriptions.router, speech.router, chat.router)

DESCRIPTION = """\
OpenAI's audio API, served by the audio gateway: every request is routed by the caller's policy to a
local engine or a cloud vendor, through the same cache, budgets and ledger as the gRPC API.

Authenticate with `Authorization: Bearer <key>`. The `model` field chooses the route: `whisper-1` (or any
OpenAI model name) uses the key's default policy, `policy:<name>` a policy, `provider:<name>` pins a
provider. Errors use OpenAI's `{"error": {...}}` shape. `x-gateway-*` response headers tell where a
request went and what it cost.
"""


def create_http_app(app: App) -> FastAPI:
    http = FastAPI(
        title="Audio gateway: OpenAI-compatible API",
        version="1",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # A path with a stray slash is a 404 in OpenAI's shape, not a redirect an SDK would not follow.
        redirect_slashes=False,
        # The gateway's metrics are its own (Prometheus); FastAPI's OpenTelemetry hooks would look up the
        # global providers on every request, and trace every request should another library set one.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    http.state.gateway = app
    install_error_handlers(http)
    http.add_middleware(RequestIds)
    for router in ROUTERS:
        http.include_router(router)
    return http
