"""Types of the compiled module built from _one_pass.pyx."""

from collections.abc import Sequence
from typing import Any

from monitor.decode import KafkaMessage
from monitor.store.rows import BatchRows

ROW_COLUMNS: dict[str, tuple[str, ...]]
MERGES: dict[str, dict[str, str]]

def one_pass_rows(
    messages: Sequence[KafkaMessage],
    max_event_bytes: int,
    max_rows: int,
    max_batch_rows: int,
    max_batch_bytes: int,
    stored_at: Any,
    times_as_text: bool,
) -> BatchRows | None: ...
