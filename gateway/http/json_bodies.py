"""JSON request bodies read by hand: within a size limit, after authentication, validated into a model.

FastAPI reads a body parameter before the endpoint's dependencies run, and whole, whatever its size. The
JSON endpoints (speech, chat) read theirs themselves instead, and describe it to the OpenAPI document
with :func:`request_body`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from gateway.http.errors import FieldErrors
from gateway.http.uploads import FORM_ALLOWANCE_BYTES, read_json_body

Model = TypeVar("Model", bound=BaseModel)


async def parse(request: Request, model: type[Model], limit: int, what: str) -> Model:
    """The body as ``model``: 413 past ``limit`` bytes plus room for the other fields, 400 naming the
    first field at fault."""
    raw = await read_json_body(request, limit + FORM_ALLOWANCE_BYTES, what)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise FieldErrors(list(exc.errors())) from None


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for an endpoint whose JSON body is ``model``, its ``$defs`` inlined (a body read by
    hand is not filed under the document's components, where the references would point)."""
    schema = model.model_json_schema()
    body = _inlined(schema, schema.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inlined(value, defs) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inlined(item, defs) for item in schema]
    return schema
