"""The headers of a dead letter, as the monitor and the trigger write them.

A dead letter is the poison record copied whole, with Kafka Connect's context headers
(errors.deadletterqueue.context.headers.enable): `__connect.errors.topic`, `.partition`,
`.offset`, `.connector.name`, `.stage`, `.exception.class.name`, `.exception.message`. A copy
cut to fit its topic says so in infermon's own `__infermon.dlq.*` headers.
"""

from __future__ import annotations

import hashlib

from infermon.excerpts import shortened

CONTEXT_HEADER_PREFIX = "__connect.errors."
# Set on a dead letter whose value was cut to fit the dead-letter topic.
HEADER_VALUE_CUT_TO = "__infermon.dlq.value.cut.to.bytes"
HEADER_ORIGINAL_BYTES = "__infermon.dlq.value.original.bytes"
HEADER_ORIGINAL_SHA256 = "__infermon.dlq.value.original.sha256"
# Set when the original headers were left out, with how many bytes they held.
HEADER_HEADERS_DROPPED = "__infermon.dlq.headers.dropped.bytes"
# An exception message may quote the record (a bad time, a bad id): a header holds its start.
MAX_ERROR_HEADER_CHARS = 2000


def context_headers(
    topic: str,
    partition: int,
    offset: int,
    connector: str,
    stage: str,
    error_class: str,
    error: str,
    **more: str,
) -> list[tuple[str, bytes]]:
    """Where the record came from and why it is a dead letter; `more`: further context."""
    fields = {
        "topic": topic,
        "partition": str(partition),
        "offset": str(offset),
        "connector.name": connector,
        "stage": stage,
        "exception.class.name": error_class,
        "exception.message": shortened(error, MAX_ERROR_HEADER_CHARS),
        **more,
    }
    # errors="replace": an error may quote a record's bad text, surrogates and all.
    return [
        (CONTEXT_HEADER_PREFIX + name, value.encode(errors="replace"))
        for name, value in fields.items()
    ]


def value_cut_headers(original: bytes, cut_to: int) -> list[tuple[str, bytes]]:
    """For a copy whose value is `original` cut to its first `cut_to` bytes."""
    return [
        (HEADER_VALUE_CUT_TO, str(cut_to).encode()),
        (HEADER_ORIGINAL_BYTES, str(len(original)).encode()),
        (HEADER_ORIGINAL_SHA256, hashlib.sha256(original).hexdigest().encode()),
    ]


def headers_dropped_header(dropped_bytes: int) -> tuple[str, bytes]:
    """For a copy without the original's headers, which held `dropped_bytes`."""
    return HEADER_HEADERS_DROPPED, str(dropped_bytes).encode()
