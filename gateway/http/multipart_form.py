"""A ``multipart/form-data`` body parsed in memory: its text fields and its files, in order.

python-multipart does the parsing, as under Starlette's form parser, with the same limits on files,
fields and text part sizes. What differs is where a file's bytes go: Starlette's parser writes each
piece to a spooled temporary file (an ``await`` per piece) that the endpoint then reads back whole, when
the pipeline wants the recording as one ``bytes`` anyway. Here the pieces are kept in a list and joined
once, so an upload is copied once and costs no file object or awaits. The caller bounds the whole body
(``uploads.read_form``), so holding it in memory holds no more than that limit.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    # Defined for type checkers only.
    from python_multipart.multipart import MultipartCallbacks


class MalformedForm(Exception):
    """The body is not a form this parser accepts; the message says why (safe to show the caller)."""


@dataclass(frozen=True)
class FilePart:
    data: bytes
    filename: str
    content_type: str


FormValue = str | FilePart


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


class _Collector:
    """python-multipart's callbacks: each finished part becomes one item."""

    def __init__(self, charset: str, max_files: int, max_fields: int, max_part_size: int) -> None:
        self.items: list[tuple[str, FormValue]] = []
        self._charset = charset
        self._max_files, self._max_fields, self._max_part_size = max_files, max_fields, max_part_size
        self._files = self._fields = 0
        self._header_name = self._header_value = b""
        self._disposition = self._content_type = b""
        self._has_content_type = False
        self._name = ""
        self._filename: str | None = None
        self._pieces: list[bytes] = []
        self._size = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._on_part_begin,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
        }

    def _on_part_begin(self) -> None:
        self._disposition = self._content_type = b""
        self._has_content_type = False
        self._pieces = []
        self._size = 0

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        # As Starlette reads a part's headers: the last Content-Disposition, the first Content-Type.
        name = self._header_name.lower()
        if name == b"content-disposition":
            self._disposition = self._header_value
        elif name == b"content-type" and not self._has_content_type:
            self._content_type, self._has_content_type = self._header_value, True
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise MalformedForm('The Content-Disposition header field "name" must be provided.')
        self._name = _decode(name, self._charset)
        filename = options.get(b"filename")
        if filename is not None:
            self._files += 1
            if self._files > self._max_files:
                raise MalformedForm(f"Too many files. Maximum number of files is {self._max_files}.")
            self._filename = _decode(filename, self._charset)
        else:
            self._fields += 1
            if self._fields > self._max_fields:
                raise MalformedForm(f"Too many fields. Maximum number of fields is {self._max_fields}.")
            self._filename = None

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._filename is None and self._size > self._max_part_size:
            raise MalformedForm(f"Part exceeded maximum size of {self._max_part_size // 1024}KB.")
        # A part that is one whole chunk needs no slice (the common case for a text field is a slice).
        self._pieces.append(data if start == 0 and end == len(data) else data[start:end])

    def _on_part_end(self) -> None:
        data = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._pieces = []
        if self._filename is None:
            self.items.append((self._name, _decode(data, self._charset)))
            return
        content_type = _decode(self._content_type, "latin-1")
        self.items.append((self._name, FilePart(data, self._filename, content_type)))


async def parse_form(
    content_type: str, body: AsyncIterator[bytes], *, max_files: int, max_fields: int, max_part_size: int
) -> list[tuple[str, FormValue]]:
    """The parts of the form in ``body``, in order, as (name, text) or (name, :class:`FilePart`).

    ``max_part_size`` bounds text parts only. Raises :class:`MalformedForm`; what ``body`` raises passes
    through."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if boundary is None:
        raise MalformedForm("Missing boundary in multipart.")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    collector = _Collector(charset, max_files, max_fields, max_part_size)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise MalformedForm("Invalid multipart data.") from None
    return collector.items
