"""AMQP header tables <-> JSON, losslessly, so a dead letter's headers survive storage.

AMQP field tables carry types JSON lacks (bytes, timestamps, decimals). They are stored
as tagged objects (``{"$bytes": "<base64>"}``, ``{"$datetime": "<iso>"}``,
``{"$decimal": "<str>"}``; a one-key table whose key is a tag is wrapped in ``$dict``)
and turned back into the same types when published again.
"""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal
from typing import Any

_TAGS = ("$bytes", "$datetime", "$decimal", "$dict")


def to_jsonable(value: Any) -> Any:
    """AMQP header value (or table) -> JSON-compatible value."""
    if isinstance(value, dict):
        table = {str(k): to_jsonable(v) for k, v in value.items()}
        # A real one-key table whose key looks like a tag is wrapped, so it stays a table.
        if len(table) == 1 and next(iter(table)) in _TAGS:
            return {"$dict": table}
        return table
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def from_jsonable(value: Any) -> Any:
    """Inverse of :func:`to_jsonable`."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, payload),) = value.items()
            if tag == "$bytes":
                # bytearray: pamqp encodes it as an AMQP byte array; it refuses plain bytes.
                return bytearray(base64.b64decode(payload))
            if tag == "$datetime":
                return datetime.fromisoformat(payload)
            if tag == "$decimal":
                return Decimal(payload)
            if tag == "$dict":
                return {k: from_jsonable(v) for k, v in payload.items()}
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


def encodable(value: Any) -> Any:
    """A header table pamqp can encode again.

    pamqp decodes a long string that is not UTF-8 as ``bytes`` but encodes only
    ``bytearray``; republishing such a header as-is would fail on every attempt.
    """
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, dict):
        return {k: encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encodable(v) for v in value]
    return value
