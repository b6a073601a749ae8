"""`DetectionStore`: drift detection's handle on the store, built on a `Store`.

It holds the transactions of the window protocol (see `detection_write`): claim a new window,
take over an expired claim, claim a done window again for late instances, and write a
report only while the claim still holds the window. Reads go through `read` (instances) and
`detection_read` (references, windows, reports).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import exc as sa_exc

from monitor.store import detection_read, detection_write, read
from monitor.store.store import Store, database_errors_as_store_errors
from monitor.store.windows import (
    Claim,
    InstanceKey,
    InstanceRange,
    Reference,
    WindowBounds,
    WindowReport,
    WindowRow,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


class DetectionStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._engine = store.engine

    def _read(self, function: Any, *args: Any) -> Any:
        with database_errors_as_store_errors(), self._engine.connect() as connection:
            return function(connection, *args)

    # Instances
    def models(self) -> list[str]:
        """Models that have instances stored."""
        models: list[str] = self._read(read.models_with_instances)
        return models

    def instances(self, where: InstanceRange, limit: int | None = None) -> pd.DataFrame:
        frame: pd.DataFrame = self._read(read.instances_in, where, limit)
        return frame

    def count_instances(self, where: InstanceRange) -> int:
        return int(self._read(read.count_instances, where))

    def nth_instance_key(self, where: InstanceRange, n: int) -> InstanceKey | None:
        key: InstanceKey | None = self._read(read.nth_instance_key, where, n)
        return key

    # References
    def reference(
        self, model: str, version: int | None = None, summarised_only: bool = False
    ) -> Reference | None:
        """The model's reference of `version`; None: its newest (with `summarised_only`,
        its newest that is not pending)."""
        found: Reference | None = self._read(
            detection_read.reference, model, version, summarised_only
        )
        return found

    def reference_data(self, model: str, version: int) -> bytes | None:
        """A pending reference's rows (Parquet), as the dashboard stored them."""
        data: bytes | None = self._read(detection_read.reference_data, model, version)
        return data

    def complete_reference(self, reference: Reference) -> Reference:
        """Stores a pending reference's summary (if no other monitor did first); the stored
        reference."""
        with database_errors_as_store_errors(), self._store.write_transaction() as connection:
            detection_write.complete_reference(connection, reference)
        stored = self.reference(reference.model, reference.version)
        if stored is None:
            raise LookupError(f"reference {reference.version} of {reference.model!r} is gone")
        return stored

    def add_reference(self, reference: Reference) -> Reference:
        """Stores `reference`; if another monitor stored its version first, that one."""
        with database_errors_as_store_errors():
            try:
                with self._store.write_transaction() as connection:
                    detection_write.insert_reference(connection, reference, utc_now())
            except sa_exc.IntegrityError:
                pass  # the same reference, summarised by another monitor of the group
        stored = self.reference(reference.model)
        if stored is None:  # written or found above
            raise LookupError(f"no reference stored for {reference.model!r}")
        return stored

    # Windows
    def last_window(self, model: str) -> WindowRow | None:
        found: WindowRow | None = self._read(detection_read.last_window, model)
        return found

    def window(self, window_id: int) -> WindowRow | None:
        found: WindowRow | None = self._read(detection_read.window, window_id)
        return found

    def claim_new(
        self,
        model: str,
        bounds: WindowBounds,
        reference_version: int,
        claimed_by: str,
        lease_s: float,
    ) -> Claim | None:
        """The new window, claimed; None when another monitor created it first."""
        lease_until = utc_now() + timedelta(seconds=lease_s)
        with database_errors_as_store_errors():
            try:
                with self._store.write_transaction() as connection:
                    return detection_write.insert_claim(
                        connection, model, bounds, reference_version, claimed_by, lease_until
                    )
            except sa_exc.IntegrityError:
                return None

    def expired_claims(self, limit: int = 10) -> list[WindowRow]:
        found: list[WindowRow] = self._read(detection_read.expired_claims, utc_now(), limit)
        return found

    def take_over(self, window: WindowRow, claimed_by: str, lease_s: float) -> Claim | None:
        """`window`'s expired claim, now ours; None if someone else holds it or finished it."""
        now = utc_now()
        with database_errors_as_store_errors(), self._store.write_transaction() as connection:
            return detection_write.take_over(
                connection, window, claimed_by, now + timedelta(seconds=lease_s), now
            )

    def recently_done(self, since: datetime, limit: int) -> list[WindowRow]:
        found: list[WindowRow] = self._read(detection_read.recently_done, since, limit)
        return found

    def reclaim(self, window: WindowRow, claimed_by: str, lease_s: float) -> Claim | None:
        """A done window again, for its next revision; None if another monitor was first."""
        lease_until = utc_now() + timedelta(seconds=lease_s)
        with database_errors_as_store_errors(), self._store.write_transaction() as connection:
            return detection_write.reclaim_done(connection, window, claimed_by, lease_until)

    def finish(self, claim: Claim, report: WindowReport) -> int | None:
        """Writes the report and marks the window done, in one transaction: the report's id,
        or None (nothing written) when the claim lost the window (its lease was taken over)."""
        with database_errors_as_store_errors(), self._store.write_transaction() as connection:
            return detection_write.finish(connection, claim, report, utc_now())

    # Reports
    def previous_dataset_drift(self, model: str, seq: int) -> bool | None:
        found: bool | None = self._read(detection_read.previous_dataset_drift, model, seq)
        return found

    def reports(self, model: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._read(detection_read.reports, model, limit)
        return found

    def outliers(self, model: str, limit: int = 100) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._read(
            detection_read.model_outliers, model, None, None, limit
        )
        return found
