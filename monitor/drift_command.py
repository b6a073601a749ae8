"""`infermon drift`: two data files compared column by column, offline.

Files are CSV, Parquet or JSON lines, told apart by extension. The output is a table, or with
`--json` a JSON list with one object per column; `--html FILE` also writes the per-feature view
(the dashboard's, histograms drawn) as one self-contained HTML file. Drift is a result (exit 0);
a file that cannot be read, or a column that is not in the reference, is a one-line error
(exit 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import Field, field_validator
from pydantic_settings import CliSuppress

from infermon import html
from infermon.errors import UsageError, first_line
from infermon.settings import CommaList, InfermonSettings, load_settings, split_comma_list
from monitor.drift.config import DriftConfig

if TYPE_CHECKING:
    from monitor.drift.report import DriftReport, FeatureDrift

# The statistics' names, for the help; `monitor.drift.statistics` (scipy) is imported only once
# both files are read, so that a mistake is reported at once. A test checks they agree.
TEST_NAMES = (
    "ks", "chisquare", "z", "cramer_von_mises", "anderson",
    "psi", "kl_div", "jensenshannon", "hellinger", "wasserstein",
)  # fmt: skip


def _jsonl(path: Path) -> pd.DataFrame:
    return pd.read_json(path, lines=True)


READERS: dict[str, tuple[str, Callable[[Path], pd.DataFrame]]] = {
    ".csv": ("CSV", pd.read_csv),
    ".parquet": ("Parquet", pd.read_parquet),
    ".pq": ("Parquet", pd.read_parquet),
    ".jsonl": ("JSON lines", _jsonl),
    ".ndjson": ("JSON lines", _jsonl),
    ".json": ("JSON lines", _jsonl),
}


class DriftSettings(InfermonSettings):
    """Compare a data file with a reference file (CSV, Parquet or JSON lines), column by column."""

    # Nothing of this command stays on disk.
    data_dir: CliSuppress[str] = InfermonSettings.model_fields["data_dir"].default

    reference: Path = Field(description="the reference data file")
    current: Path = Field(description="the data file compared with the reference")
    as_json: bool = Field(
        False, alias="json", description="print a JSON list, one object per column"
    )
    test: str | None = Field(
        None,
        description="the test for every column of a kind it applies to (others: automatic): "
        + ", ".join(TEST_NAMES),
    )
    correction: Literal["none", "bonferroni", "fdr"] = Field(
        "bonferroni", description="correction over the p-value tests"
    )
    threshold: float | None = Field(
        None, description="the threshold of every test; unset: each test's own"
    )
    columns: CommaList = Field(
        default_factory=list, description="only these columns, a,b,c; unset: all"
    )
    html: Path | None = Field(
        None, description="also write the per-feature view, histograms drawn, to this HTML file"
    )

    @field_validator("columns", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_comma_list(value)

    @field_validator("test")
    @classmethod
    def _known_test(cls, value: str | None) -> str | None:
        if value is not None and value not in TEST_NAMES:
            raise ValueError(f"unknown test: choose one of {', '.join(TEST_NAMES)}")
        return value


def main(argv: Sequence[str]) -> int:
    settings = load_settings(DriftSettings, argv, "infermon drift")
    if settings.html is not None and not settings.html.parent.is_dir():
        raise UsageError(f"--html {settings.html}: no folder {settings.html.parent} to write it in")
    reference = read_table(settings.reference, "--reference")
    current = read_table(settings.current, "--current")
    if reference.empty:
        raise UsageError(f"--reference {settings.reference}: no rows to compare with")
    config = drift_config(settings, reference, current)
    from monitor.drift.report import compare  # scipy: only once needed
    from monitor.drift.sketch import summarise

    report = compare(summarise(reference, config), current, config)
    if settings.as_json:
        print(json.dumps([feature.as_dict() for feature in report.features], indent=2))
    else:
        print(table(report))
    if settings.html is not None:
        write_html(settings, report)
    return 0


def write_html(settings: DriftSettings, report: DriftReport) -> None:
    assert settings.html is not None
    page = html.standalone_report(
        report.as_dict(),
        title=f"Drift: {settings.current.name} against {settings.reference.name}",
        details=[
            ("reference", str(settings.reference)),
            ("current", str(settings.current)),
            ("correction", report.correction),
            ("written", datetime.now(UTC).isoformat(timespec="seconds")),
        ],
    )
    try:
        settings.html.write_text(page, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--html {settings.html}: cannot write it: {error.strerror}") from None


def read_table(path: Path, flag: str) -> pd.DataFrame:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise UsageError(f"{flag} {path}: unknown file type: name it {known}")
    if not path.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    form, read = reader
    try:
        frame = read(path)
    except Exception as error:  # each reader has its own errors; all mean "not this format"
        raise UsageError(f"{flag} {path}: cannot read it as {form}: {first_line(error)}") from None
    return frame.rename(columns=str)


def drift_config(
    settings: DriftSettings, reference: pd.DataFrame, current: pd.DataFrame
) -> DriftConfig:
    known = set(reference.columns)
    unknown = [name for name in settings.columns if name not in known]
    if unknown:
        raise UsageError(f"--columns: {_names(unknown)} not in the reference")
    chosen = settings.columns or list(current.columns)
    extra = [name for name in chosen if name not in known]
    if extra:
        raise UsageError(
            f"{_names(extra)} of --current not in the reference: choose columns with --columns"
        )
    from monitor.drift.statistics import STATISTICS  # scipy: only once needed

    statistic = STATISTICS[settings.test] if settings.test else None
    return DriftConfig(
        include=settings.columns or None,
        numeric_test=settings.test if statistic and "numeric" in statistic.column_kinds else None,
        categorical_test=(
            settings.test if statistic and "categorical" in statistic.column_kinds else None
        ),
        threshold=settings.threshold,
        correction=settings.correction,
    )


def _names(names: list[str]) -> str:
    return ("column " if len(names) == 1 else "columns ") + ", ".join(map(repr, names))


def table(report: DriftReport) -> str:
    header = ["column", "kind", "test", "score", "threshold", "drift", "missing", "note"]
    rows = [header, *(_row(feature) for feature in report.features)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    verdict = "drift" if report.dataset_drift else "no drift"
    lines.append(
        f"\n{report.instances} instances: {verdict} ({report.drifted} of {report.valid} columns "
        f"tested drifted, share {report.share:.2f}; dataset drift from {report.drift_share:.2f}; "
        f"correction {report.correction})"
    )
    return "\n".join(lines)


def _row(feature: FeatureDrift) -> list[str]:
    if feature.p_value is not None:
        score = f"p={_number(feature.p_value)}"
    elif feature.distance is not None:
        score = f"d={_number(feature.distance)}"
    else:
        score = "-"
    notes: list[str] = [feature.status] if feature.status != "ok" else []
    if feature.reason:
        notes = [f"{feature.status}: {feature.reason}"]
    if feature.missing_drift:
        notes.append(
            f"missing share changed ({feature.reference_missing_share:.1%} -> "
            f"{feature.missing_share:.1%})"
        )
    if feature.unseen_categories:
        notes.append(f"{feature.unseen_categories} unseen categories")
    return [
        feature.column,
        feature.kind,
        feature.test,
        score,
        _number(feature.threshold),
        "DRIFT" if feature.drift else "no",
        f"{feature.missing_share:.1%}",
        "; ".join(notes),
    ]


def _number(value: float) -> str:
    return f"{value:.3g}" if value and (abs(value) < 1e-3 or math.isinf(value)) else f"{value:.4f}"
