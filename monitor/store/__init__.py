"""The store: payload events, inferences and their instances in SQL (PostgreSQL or SQLite).

Import the module you need; this package imports nothing itself, so that a reader (a detector,
the dashboard) gets only SQLAlchemy and the schema:

- `schema`: the tables; `migrations/`: Alembic revisions that create them.
- `engine`: the SQLAlchemy engine (drivers, pool, SQLite settings).
- `read`: instances as frames, pages of inferences, counts (imports only the schema).
- `records`: what a writer hands the store (decoded events, dead letters).
- `layout`: the rows' column orders and the call-merge rules, declared once.
- `rows`, `write`: a batch merged into rows in Python, then written in bulk.
- `store`: `Store`, one handle on all of it, with transactions and the store's errors.
- Drift detection: `windows` (keys, window bounds, claims, reports as plain values),
  `detection_write` (references, the window claim protocol, reports), `detection_read`
  (references, windows, reports, outliers; for the dashboard too, like `read`), and
  `detection_store`'s `DetectionStore`, the evaluator's handle, built on a `Store`.

Nothing here knows Kafka: the consumer (`monitor.service`, `monitor.decode`, the compiled
`monitor.one_pass`) turns records into `records.StoredEvent`s or straight into rows.
"""
