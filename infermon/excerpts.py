"""Text from outside, cut to fit a reason: an error message, a log line, a header.

A reason may quote what it refuses (a whole header, a record's time), and a client, a log or a
dead letter should get its start and how long it was, not all of it.
"""

from __future__ import annotations

# An error reason as a client or the log gets it.
MAX_REASON_CHARS = 500
# A value quoted inside a reason.
MAX_QUOTED_CHARS = 80


def shortened(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` in at most `limit` characters: when longer, its start and how long it was.

    >>> shortened("a" * 30, limit=25)
    'aaaaaa... (30 characters)'
    """
    if len(text) <= limit:
        return text
    note = _cut_note(len(text))
    return text[: max(0, limit - len(note))] + note


def quoted(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """`value` in Python's quotes and escapes, to name it in a reason; cut when long.

    >>> quoted("x" * 100, limit=3)
    "'xxx'... (100 characters)"
    """
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else repr(value[:limit]) + _cut_note(len(value))
    return shortened(repr(value), limit)


def _cut_note(length: int) -> str:
    return f"... ({length} characters)"
