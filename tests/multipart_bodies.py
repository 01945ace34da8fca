"""Hand-built multipart/form-data parts, for tests that mangle form bodies byte by byte."""

from __future__ import annotations


def form_part(
    boundary: str, name: str, value: bytes, filename: str | None = None, content_type: str | None = None
) -> bytes:
    """One part with its leading boundary line; a ``filename`` makes it a file part."""
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"Content-Disposition: {disposition}\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    return f"--{boundary}\r\n{head}\r\n".encode() + value + b"\r\n"
