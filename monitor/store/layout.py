"""The rows a writer hands the database, declared once: their column order, and how a call's
request and response merge into one row (no SQL, no Kafka here).

Every row the monitor writes is a tuple in its table's column order, taken from the table
itself (`schema`): the Python merge (`rows`), the SQL statements (`write`) and the compiled
one pass (`monitor/_one_pass.pyx`, checked against this at import by `monitor.one_pass`) all
build or name their columns from here. `MERGES` says, column by column, how a row already
stored and the same row arriving become one: `write` generates the SQL upserts from it, and
`rows` and the one pass implement it in code, tested against the SQL
(`tests/monitor/store/test_layout.py`).
"""

from __future__ import annotations

from enum import Enum

from monitor.store.schema import dead_letters, events, inferences, instances

ROW_COLUMNS: dict[str, tuple[str, ...]] = {
    table.name: tuple(table.columns.keys())
    for table in (events, inferences, instances, dead_letters)
}
EVENT_COLUMNS = ROW_COLUMNS["events"]
INFERENCE_COLUMNS = ROW_COLUMNS["inferences"]
INSTANCE_COLUMNS = ROW_COLUMNS["instances"]
DEAD_LETTER_COLUMNS = ROW_COLUMNS["dead_letters"]


class Merge(Enum):
    """How one column of a row stored and of the same row arriving merge.

    A row's request side is its call's request event (an inference that has it, an instance
    that has its features); keeping a known value rather than a NULL is every rule's aim.
    """

    KEY = "key"  # the row's key: the same on both sides
    REQUEST_FIRST = "request first"  # the request side's value if known, else the other's
    FIRST = "first"  # the value stored if known, else the arriving one
    REQUEST_SIDE = "request side"  # the request side's; without one, the value stored first
    EITHER = "either"  # true if true on either side
    UNTIL_RESPONSE = "until response"  # as stored, and false once either side is a response
    FIRST_ELSE_DERIVED = "first, else derived"  # FIRST, else computed from the merged row
    DERIVED = "derived"  # computed from the merged row's other columns


_DESCRIBES_THE_CALL = ("model", "namespace", "inference_service", "component", "protocol")

# Events and dead letters are written once: the first copy stays, as it is.
MERGES: dict[str, dict[str, Merge]] = {
    "inferences": {
        "request_id": Merge.KEY,
        **dict.fromkeys(_DESCRIBES_THE_CALL, Merge.REQUEST_FIRST),
        "time": Merge.REQUEST_SIDE,
        "request_time": Merge.FIRST,
        "response_time": Merge.FIRST,
        "latency_ms": Merge.FIRST_ELSE_DERIVED,  # response minus request time
        "status_code": Merge.FIRST,
        "batch_size": Merge.DERIVED,  # request_rows, else response_rows
        "request_rows": Merge.FIRST,
        "response_rows": Merge.FIRST,
        "batch_size_mismatch": Merge.DERIVED,  # both row counts known and different
        "has_request": Merge.EITHER,
        "has_response": Merge.EITHER,
        "orphaned": Merge.UNTIL_RESPONSE,
        "request_payload_kind": Merge.FIRST,
        "response_payload_kind": Merge.FIRST,
    },
    "instances": {
        "request_id": Merge.KEY,
        "row_index": Merge.KEY,
        "model": Merge.REQUEST_FIRST,
        "time": Merge.REQUEST_SIDE,
        "features": Merge.FIRST,
        "prediction": Merge.FIRST,
    },
}

# Whether a row's side is the request, and whether it is the response, as SQL conditions on
# `{side}` (the table's name for the row stored, `excluded` for the one arriving).
REQUEST_SIDE = {"inferences": "{side}.has_request", "instances": "{side}.features IS NOT NULL"}
RESPONSE_SIDE = {"inferences": "{side}.has_response", "instances": "{side}.prediction IS NOT NULL"}


def merged_by(table: str, rule: Merge) -> tuple[str, ...]:
    """The columns of `table` that `rule` merges, in column order."""
    return tuple(column for column in ROW_COLUMNS[table] if MERGES[table][column] is rule)


class LayoutMismatchError(RuntimeError):
    """Code that builds rows or merges them otherwise than declared here."""


def check_layout(
    what: str, columns: dict[str, tuple[str, ...]], merges: dict[str, dict[str, str]]
) -> None:
    """That `what` builds rows in the declared column order and merges them by the declared
    rules (given by their `Merge` values), for every table it names; else the error says how
    it differs."""
    for table, own in columns.items():
        if own != ROW_COLUMNS[table]:
            raise LayoutMismatchError(
                f"{what} builds {table} rows as {own}, the store's columns are {ROW_COLUMNS[table]}"
            )
    for table, own_rules in merges.items():
        declared = {column: rule.value for column, rule in MERGES[table].items()}
        if own_rules != declared:
            differing = sorted(c for c in {*own_rules, *declared}
                               if own_rules.get(c) != declared.get(c))  # fmt: skip
            raise LayoutMismatchError(
                f"{what} merges {table} otherwise than the store declares, in {differing}"
            )


# Every merged table's columns have exactly one rule each: a column added to the schema
# without one is an error at import, not a column the upsert forgets.
for _table, _rules in MERGES.items():
    if tuple(_rules) != ROW_COLUMNS[_table]:
        raise LayoutMismatchError(f"{_table}: merge rules for {tuple(_rules)}, columns"
                                  f" {ROW_COLUMNS[_table]}")  # fmt: skip
