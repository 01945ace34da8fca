"""The request id every door reports: the caller's own ``x-request-id`` when it is tame, else a fresh one."""

from __future__ import annotations

import re
import uuid

REQUEST_ID_HEADER = "x-request-id"
# Caller-chosen ids are echoed into logs, headers and the ledger, so keep them tame.
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(value: object) -> str:
    """``value`` if it is an acceptable id, otherwise a new random one."""
    if isinstance(value, str) and VALID_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex
