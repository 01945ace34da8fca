"""Multipart uploads, read within the audio size limit while they stream in.

Starlette's multipart parser spools files to disk past 1 MB, so nothing it does bounds what a caller may
send. Here the form is parsed (``multipart_form``) from a counting wrapper over the request's byte stream:
a declared ``Content-Length`` over the limit is refused before any byte is read, and a body that grows
past it (a lying or absent length, chunked transfer) is refused at the chunk that crosses it. Either way
the caller gets 413 (``LimitExceeded``) and the gateway never held more than the limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request

from gateway.core.errors import InvalidInput, LimitExceeded, clip
from gateway.http.multipart_form import FilePart, FormValue, MalformedForm, parse_form

# Room for the form's other fields and the multipart framing, on top of the audio limit.
FORM_ALLOWANCE_BYTES = 64 * 1024
# A text field (a prompt, a model name) may be no longer than this.
MAX_FIELD_BYTES = 16 * 1024
MAX_FIELDS = 32


class _TooLarge(Exception):
    """Raised inside the parser's read loop when the body passes the limit."""


@dataclass(frozen=True)
class Form:
    """A parsed form: its parts in the order sent, the file as bytes in memory (the pipeline digests and
    probes it as bytes)."""

    items: list[tuple[str, FormValue]]

    def get(self, name: str) -> FormValue | None:
        """The last part named ``name``, as a form field repeated without ``[]`` is read."""
        found = None
        for key, value in self.items:
            if key == name:
                found = value
        return found


def _too_large(limit: int, audio_limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"the upload is over {limit} bytes: audio files may be up to {audio_limit} bytes "
        "(GATEWAY_LIMITS__MAX_AUDIO_BYTES); send a shorter or more compressed recording"
    )


async def _counted(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise _TooLarge
        yield chunk


async def read_form(request: Request, audio_limit: int) -> Form:
    """The multipart form of ``request``, refused (413) as soon as it passes ``audio_limit`` plus room
    for the other fields."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidInput(
            f"the body must be multipart/form-data with the audio in a 'file' part, not "
            f"{clip(content_type) or 'no content type'!r}"
        )
    limit = audio_limit + FORM_ALLOWANCE_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, audio_limit)
    try:
        items = await parse_form(
            content_type,
            _counted(request.stream(), limit),
            max_files=1,
            max_fields=MAX_FIELDS,
            max_part_size=MAX_FIELD_BYTES,
        )
    except _TooLarge:
        raise _too_large(limit, audio_limit) from None
    except MalformedForm as exc:
        raise InvalidInput(f"the multipart body is malformed: {clip(str(exc), 200)}") from None
    return Form(items)


def read_upload(form: Form, audio_limit: int, field: str = "file") -> FilePart:
    """The file part named ``field``; 400 when it is missing or is a text field."""
    value = form.get(field)
    if value is None:
        raise InvalidInput(f"missing required parameter {field!r}: attach the audio file as a multipart file")
    if not isinstance(value, FilePart):
        raise InvalidInput(f"{field!r} must be a file part (with a filename), not a text field")
    if len(value.data) > audio_limit:
        raise LimitExceeded(f"audio is {len(value.data)} bytes; the limit is {audio_limit} bytes")
    if not value.data:
        raise InvalidInput(f"the {field!r} part is empty: attach the audio file's bytes")
    return value


def text_fields(form: Form, skip: frozenset[str]) -> dict[str, str | list[str]]:
    """The form's text fields for validation: a ``name[]`` field as a list, any other the last value."""
    fields: dict[str, str | list[str]] = {}
    for name, value in form.items:
        if name in skip:
            continue
        if not isinstance(value, str):
            raise InvalidInput(f"{clip(name)!r} must be a text field, not a file")
        if name.endswith("[]"):
            listed = fields.setdefault(name, [])
            assert isinstance(listed, list)
            listed.append(value)
        else:
            fields[name] = value
    return fields


async def read_json_body(request: Request, limit: int, what: str) -> bytes:
    """A JSON body, refused (413) as soon as it passes ``limit`` bytes; ``what`` tells the caller which
    limit that is. Read after authentication, so an unknown key never costs the gateway a large body."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("application/json"):
        given = clip(content_type) or "no content type"
        raise InvalidInput(f"the body must be application/json, not {given!r}")
    declared = request.headers.get("content-length", "")
    too_large = LimitExceeded(f"the body is over {limit} bytes: {what}")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    try:
        return b"".join([chunk async for chunk in _counted(request.stream(), limit)])
    except _TooLarge:
        raise too_large from None
