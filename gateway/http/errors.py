"""Errors in OpenAI's JSON shape, ``{"error": {"message", "type", "param", "code"}}``.

Which HTTP status and OpenAI type an error gets comes from the one table in
:data:`gateway.core.errors.CLASSIFICATION`, the table the gRPC status codes come from. FastAPI's own
refusals (a validation error, an unknown path, a wrong method) are put in the same shape, and a request
that fails validation is 400, as OpenAI answers, not FastAPI's 422.
"""

from __future__ import annotations

import math
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.core import errors
from gateway.core.errors import GatewayError, clip

log = structlog.get_logger(__name__)

_INVALID = "invalid_request_error"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error envelope, as every non-2xx answer of this API carries it."""

    error: ErrorDetail


class FieldErrors(Exception):
    """Request fields that fail validation (pydantic's error dicts): answered 400 naming the first."""

    def __init__(self, problems: list[Any]) -> None:
        super().__init__("invalid request fields")
        self.problems = problems


def error_response(
    status: int,
    message: str,
    type_: str = _INVALID,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(message=message, type=type_, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def retry_headers(retry_after_s: float) -> dict[str, str]:
    """``Retry-After`` (whole seconds, as HTTP defines it) and ``retry-after-ms``, which the OpenAI SDKs
    read first; ``x-should-retry: false`` when the wait is too long for an SDK's own retries."""
    headers = {
        "retry-after": str(max(math.ceil(retry_after_s), 1)),
        "retry-after-ms": str(max(round(retry_after_s * 1000), 1)),
    }
    headers["x-should-retry"] = "true" if retry_after_s <= errors.AUTOMATIC_RETRY_MAX_S else "false"
    return headers


# The request field an error is about, where the error's type says it.
_PARAM = {errors.UnknownModel: "model"}


def gateway_error_response(exc: GatewayError) -> JSONResponse:
    classification = errors.classify(exc)
    log.info("request.rejected", status=classification.http_status, kind=exc.kind)
    headers = retry_headers(exc.retry_after_s) if exc.retry_after_s is not None else None
    return error_response(
        classification.http_status,
        str(exc),
        classification.openai_type,
        classification.openai_code,
        _PARAM.get(type(exc)),
        headers,
    )


def validation_response(problems: list[dict[str, Any]], where: str = "body") -> JSONResponse:
    """400 naming the first field at fault (OpenAI reports one), with every problem in the message."""
    described = []
    param = None
    for problem in problems:
        location = [str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "path")]
        name = ".".join(location) or where
        param = param or name
        if problem.get("type") == "missing":
            described.append(f"missing required parameter {clip(name)!r}")
        elif problem.get("type") == "extra_forbidden":
            described.append(f"unrecognized parameter {clip(name)!r}")
        else:
            described.append(f"{clip(name)}: {clip(str(problem.get('msg', 'invalid value')), 200)}")
    missing = bool(problems) and problems[0].get("type") == "missing"
    code = "missing_required_parameter" if missing else "invalid_value"
    return error_response(400, "; ".join(described) or "invalid request", code=code, param=param)


async def _on_gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return gateway_error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_response(list(exc.errors()))


async def _on_field_errors(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FieldErrors)
    return validation_response(exc.problems)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"unrecognized request URL ({request.method} {clip(request.url.path)}); see /openapi.json"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {clip(request.url.path)}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message, headers=dict(exc.headers or {}))


async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not the caller's fault: log it whole, tell the caller only the id.
    request_id = getattr(request.state, "request_id", "")
    log.error("request.crashed", exc_info=exc, request_id=request_id)
    return error_response(
        500,
        f"internal error; quote request id {request_id} when reporting it",
        errors.INTERNAL.openai_type,
        errors.INTERNAL.openai_code,
        headers={"x-request-id": request_id} if request_id else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(FieldErrors, _on_field_errors)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_crash)


# For each endpoint's OpenAPI entry: what its refusals look like.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "invalid request (bad field, undecodable audio, no provider can serve it)"),
        (401, "missing or unknown API key"),
        (403, "the key's tenant may not use that policy"),
        (404, "unknown model (policy or provider)"),
        (413, "upload or audio over the configured limit"),
        (429, "over the tenant's budget or the gateway's load limit; see Retry-After"),
        (503, "every provider failed, or the engines are loading"),
    )
}
