"""The write side of drift detection: references, window claims and their reports, retention.

Each function works inside its caller's transaction (`Store` and `DetectionStore` hold them).
A window is evaluated once across a consumer group because the database decides who holds
it: a new window is claimed by INSERT (the unique (model, seq) lets one monitor win), an
expired claim is taken over by a conditional UPDATE, and a report is written only by the
claim that still holds the window (a compare-and-set on claimed_by and revision).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from monitor.store.schema import (
    drift_features,
    drift_references,
    drift_reports,
    drift_windows,
    outliers,
)
from monitor.store.windows import (
    CLAIMED,
    DONE,
    Claim,
    InstanceKey,
    Reference,
    WindowBounds,
    WindowReport,
    WindowRow,
)


def _key_values(prefix: str, key: InstanceKey | None) -> dict[str, Any]:
    values = (None, None, None) if key is None else key
    return dict(
        zip((f"{prefix}_time", f"{prefix}_request_id", f"{prefix}_row_index"), values, strict=True)
    )


def insert_reference(connection: Connection, reference: Reference, now: datetime) -> None:
    """Raises IntegrityError when another monitor stored this version first."""
    connection.execute(
        insert(drift_references).values(
            model=reference.model,
            version=reference.version,
            source=reference.source,
            created_at=now,
            rows=reference.rows,
            columns=reference.columns,
            sketch=reference.sketch,
            outlier_detector=reference.outlier_detector,
            origin=reference.origin,
            **_key_values("first", reference.first),
            **_key_values("last", reference.last),
        )
    )


def complete_reference(connection: Connection, reference: Reference) -> bool:
    """A pending reference's summary stored; False when another monitor stored it first."""
    return (
        connection.execute(
            update(drift_references)
            .where(
                drift_references.c.model == reference.model,
                drift_references.c.version == reference.version,
                drift_references.c.sketch.is_(None),
            )
            .values(
                rows=reference.rows,
                columns=reference.columns,
                sketch=reference.sketch,
                outlier_detector=reference.outlier_detector,
            )
        ).rowcount
        == 1
    )


def insert_claim(
    connection: Connection,
    model: str,
    bounds: WindowBounds,
    reference_version: int,
    claimed_by: str,
    lease_until: datetime,
) -> Claim:
    """A new window, claimed; raises IntegrityError when its (model, seq) exists already."""
    values: dict[str, Any] = {
        "model": model,
        "seq": bounds.seq,
        "kind": bounds.kind,
        "window_start": bounds.start,
        "window_end": bounds.end,
        **_key_values("after", bounds.after),
        **_key_values("end", bounds.through),
        "state": CLAIMED,
        "claimed_by": claimed_by,
        "lease_until": lease_until,
        "revision": 1,
        "reference_version": reference_version,
    }
    window_id = connection.execute(
        insert(drift_windows).values(**values).returning(drift_windows.c.id)
    ).scalar_one()
    row = WindowRow(
        int(window_id),
        model,
        bounds,
        CLAIMED,
        claimed_by,
        lease_until,
        1,
        None,
        None,
        reference_version,
    )
    return Claim(row, claimed_by, 1)


def take_over(
    connection: Connection,
    window: WindowRow,
    claimed_by: str,
    lease_until: datetime,
    now: datetime,
) -> Claim | None:
    """`window`'s claim, if it is still claimed and its lease has run out; same revision."""
    taken = connection.execute(
        update(drift_windows)
        .where(
            drift_windows.c.id == window.id,
            drift_windows.c.state == CLAIMED,
            drift_windows.c.revision == window.revision,
            drift_windows.c.lease_until < now,
        )
        .values(claimed_by=claimed_by, lease_until=lease_until)
    ).rowcount
    return Claim(window, claimed_by, window.revision) if taken == 1 else None


def reclaim_done(
    connection: Connection, window: WindowRow, claimed_by: str, lease_until: datetime
) -> Claim | None:
    """A done window claimed again for its next revision (late instances came)."""
    taken = connection.execute(
        update(drift_windows)
        .where(
            drift_windows.c.id == window.id,
            drift_windows.c.state == DONE,
            drift_windows.c.revision == window.revision,
        )
        .values(
            state=CLAIMED,
            revision=window.revision + 1,
            claimed_by=claimed_by,
            lease_until=lease_until,
        )
    ).rowcount
    return Claim(window, claimed_by, window.revision + 1) if taken == 1 else None


def finish(connection: Connection, claim: Claim, report: WindowReport, now: datetime) -> int | None:
    """The report of `claim`, its features and outliers, and the window done: the id of the
    report, or None (nothing written) when the claim no longer holds the window."""
    window = claim.window
    late = 0 if claim.revision == 1 else max(0, report.instances - window.on_time)
    done = connection.execute(
        update(drift_windows)
        .where(
            drift_windows.c.id == window.id,
            drift_windows.c.state == CLAIMED,
            drift_windows.c.claimed_by == claim.claimed_by,
            drift_windows.c.revision == claim.revision,
        )
        .values(state=DONE, instances=report.instances, late=late, done_at=now)
    ).rowcount
    if done != 1:
        return None
    report_id = connection.execute(
        insert(drift_reports)
        .values(
            window_id=window.id,
            revision=claim.revision,
            model=window.model,
            window_start=window.bounds.start,
            window_end=window.bounds.end,
            instances=report.instances,
            reference_version=window.reference_version,
            dataset_drift=report.dataset_drift,
            share=report.share,
            drifted=report.drifted,
            valid=report.valid,
            drift_share=report.drift_share,
            correction=report.correction,
            late=late,
            outliers=len(report.outliers),
            computed_at=now,
            multivariate=report.multivariate,
        )
        .returning(drift_reports.c.id)
    ).scalar_one()
    if report.features:
        rows = [
            {**feature, "report_id": report_id, "position": position}
            for position, feature in enumerate(report.features)
        ]
        connection.execute(insert(drift_features), rows)
    # A window's outliers are those of its latest revision.
    connection.execute(delete(outliers).where(outliers.c.window_id == window.id))
    if report.outliers:
        rows = [
            {**outlier, "report_id": report_id, "window_id": window.id, "model": window.model}
            for outlier in report.outliers
        ]
        connection.execute(insert(outliers), rows)
    return int(report_id)


def purge_windows(connection: Connection, before: datetime, batch_rows: int) -> tuple[int, int]:
    """Up to `batch_rows` windows that ended before `before`, with their reports, features
    and outliers: (windows removed, rows removed). A model's newest window stays, so that
    its windows carry on after it rather than start again from its reference."""
    newest = (
        select(drift_windows.c.model, func.max(drift_windows.c.seq).label("seq"))
        .group_by(drift_windows.c.model)
        .subquery()
    )
    window_ids = connection.scalars(
        select(drift_windows.c.id)
        .outerjoin(
            newest,
            and_(newest.c.model == drift_windows.c.model, newest.c.seq == drift_windows.c.seq),
        )
        .where(drift_windows.c.window_end < before, newest.c.seq.is_(None))
        .limit(batch_rows)
    ).all()
    if not window_ids:
        return 0, 0
    report_ids = select(drift_reports.c.id).where(drift_reports.c.window_id.in_(window_ids))
    removed = connection.execute(
        delete(outliers).where(outliers.c.window_id.in_(window_ids))
    ).rowcount
    removed += connection.execute(
        delete(drift_features).where(drift_features.c.report_id.in_(report_ids))
    ).rowcount
    removed += connection.execute(
        delete(drift_reports).where(drift_reports.c.window_id.in_(window_ids))
    ).rowcount
    removed += connection.execute(
        delete(drift_windows).where(drift_windows.c.id.in_(window_ids))
    ).rowcount
    return len(window_ids), removed
