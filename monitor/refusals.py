"""A batch the database refuses for good (not an outage): split until each event it refuses
stands alone, so that those become dead letters and everything else is stored.

A refusal is rare (PostgreSQL's limit on an index row, ~2.7 KB, is one: a huge event id), so
halving costs little: log2(batch) rounds of writes that mostly succeed. Writes are idempotent,
so the halves that went in before a failure are simply written again where needed.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.store.records import StoredEvent
from monitor.store.store import Store, StoreUnavailableError, WriteResult


def write_refusing(
    store: Store, events: Sequence[StoredEvent]
) -> tuple[list[WriteResult], list[tuple[StoredEvent, Exception]]]:
    """Writes what the store takes; returns its results and the events it refused, with why.

    An outage (StoreUnavailableError) is not a refusal: it propagates, to be waited out. Any
    other failure is one, the database's (StoreError) or one an event set off on its way.
    """
    try:
        return [store.write(events)], []
    except StoreUnavailableError:
        raise
    except Exception as error:
        if len(events) == 1:
            return [], [(events[0], error)]
        middle = len(events) // 2
        first = write_refusing(store, events[:middle])
        second = write_refusing(store, events[middle:])
        return first[0] + second[0], first[1] + second[1]
