"""Kafka records straight to a store's rows in one pass, through the compiled `_one_pass.pyx`.

The consumer's side of the store: it knows Kafka records and their decoding, which the store
does not. When the compiled module was not built (no C compiler at install), or the batch is
not plain, `prepare_records` returns None and the consumer decodes record by record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from monitor.decode import KafkaMessage
from monitor.payloads import DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_ROWS
from monitor.store.layout import LayoutMismatchError, check_layout
from monitor.store.rows import BatchRows
from monitor.store.store import SUB_BATCH_EVENTS, PreparedBatch, Store

log = logging.getLogger(__name__)

# The compiled function's signature (_one_pass.pyi): records, the limits, stored_at, as text.
OnePassRows = Callable[[Sequence[KafkaMessage], int, int, int, int, Any, bool], BatchRows | None]


def _compiled() -> OnePassRows | None:
    """The compiled path, built at install where a C compiler is at hand (setup.py), once
    checked to build and merge rows as the store declares them (`check_compiled`)."""
    try:
        from monitor import _one_pass
    except ImportError:
        return None
    check_compiled(_one_pass)
    return _one_pass.one_pass_rows


def check_compiled(module: Any) -> None:
    """A build of `_one_pass.pyx` older than the store's row layout or merge rules would write
    values into the wrong columns: refuse it, loudly, with how it differs."""
    rebuild = "rebuild it (pip install ., or python setup.py build_ext --inplace)"
    columns, merges = getattr(module, "ROW_COLUMNS", None), getattr(module, "MERGES", None)
    if columns is None or merges is None:
        raise LayoutMismatchError(
            f"the compiled one pass ({module.__file__}) declares no row layout: it was built"
            f" from an older monitor/_one_pass.pyx; {rebuild}"
        )
    try:
        check_layout("the compiled one pass", columns, merges)
    except LayoutMismatchError as error:
        raise LayoutMismatchError(f"{error}; {rebuild}") from error


one_pass_rows = _compiled()
ONE_PASS_BUILT = one_pass_rows is not None


def prepare_records(
    store: Store,
    records: Sequence[KafkaMessage],
    max_event_bytes: int,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> PreparedBatch | None:
    """`store.prepare` straight from Kafka records in one pass, when the compiled path is
    built, every record is plain and the batch explodes at most `max_batch_rows` rows and
    holds at most `max_batch_bytes`; else None: decode them and `store.prepare`."""
    if one_pass_rows is None or not 0 < len(records) <= SUB_BATCH_EVENTS:
        return None
    stored_at = store.time_value(datetime.now(UTC))
    as_text = store.engine.dialect.name == "sqlite"
    try:
        rows = one_pass_rows(
            records, max_event_bytes, max_rows, max_batch_rows, max_batch_bytes, stored_at,
            as_text,
        )  # fmt: skip
    except Exception:  # a bug there must not cost the batch: the general path takes it
        log.exception("the one-pass path failed on a batch; decoding it record by record")
        return None
    if rows is None:
        return None
    return PreparedBatch([rows], len(records), len(rows.inferences), len(rows.instances))
