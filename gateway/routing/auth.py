"""Who is calling: the API key in `authorization: Bearer …` resolved to a tenant, for every door."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.core.errors import Unauthenticated
from policies.loader import PolicyBook
from policies.model import Tenant


def authenticate(
    book: PolicyBook, metadata: Iterable[tuple[str, str | bytes]], carrier: str = "metadata"
) -> Tenant:
    """The tenant whose key the ``authorization`` entry of ``metadata`` (lower-case names) carries.

    ``carrier`` names what the entry travels in (gRPC metadata, an HTTP header) in the messages.
    """
    if not book.auth_required:
        return book.anonymous
    header = next((value for key, value in metadata if key == "authorization"), None)
    if not isinstance(header, str) or not header.strip():
        raise Unauthenticated(f"missing API key: send it as 'authorization: Bearer <key>' {carrier}")
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated(f"malformed authorization {carrier}: expected 'Bearer <key>'")
    tenant = book.tenant_for_key(key.strip())
    if tenant is None:
        raise Unauthenticated("unknown API key")
    return tenant
