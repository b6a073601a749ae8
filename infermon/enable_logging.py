"""`infermon enable-logging FILE`: KServe's payload logger pointed at infermon, in a manifest.

Sets `spec.<component>.logger` (mode, url, and metadataHeaders when given) in every
InferenceService of a multi-document YAML file and writes the file back (or to `-o OUT`, or
to stdout with `-o -`); nothing else in the file changes. A file that is not YAML, or holds
no InferenceService, is a one-line error (exit 2) and nothing is written.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import CliPositionalArg, CliSuppress

from infermon.errors import UsageError
from infermon.logger_block import LoggerFields, ManifestError, set_logger
from infermon.settings import CommaList, InfermonSettings, load_settings, split_comma_list

PROG = "infermon enable-logging"
# The ingest Service of deploy/kubernetes (namespace infermon, port 80), as seen from another
# namespace.
INGEST_SERVICE_URL: Final = "http://infermon-ingest.infermon/"
# KServe's logger sends CloudEvents over HTTP(S), or writes to blob storage.
URL_SCHEMES = ("http", "https", "s3", "gs", "abfs")


class EnableLoggingSettings(InfermonSettings):
    """Set KServe's payload logger (spec.<component>.logger) in every InferenceService of a
    YAML manifest, keeping the rest of the file byte for byte."""

    # Nothing of this command stays on disk.
    data_dir: CliSuppress[str] = InfermonSettings.model_fields["data_dir"].default

    file: CliPositionalArg[Path] = Field(description="the manifest, one or more YAML documents")
    url: str = Field(INGEST_SERVICE_URL, description="where KServe's logger sends the events")
    mode: Literal["all", "request", "response"] = Field(
        "all", description="which events KServe logs"
    )
    metadata_headers: CommaList | None = Field(
        None,
        description="request headers copied into the events' metadata, comma list; written "
        "in the canonical case (x-request-id: X-Request-Id), the only one KServe matches; "
        "unset: left as they are",
    )
    component: Literal["predictor", "transformer", "explainer"] = Field(
        "predictor", description="the component whose calls are logged"
    )
    output: str = Field(
        "",
        validation_alias=AliasChoices("o", "output"),
        description="write here instead of FILE; -: standard output",
    )

    _split = field_validator("metadata_headers", mode="before")(split_comma_list)

    @field_validator("url")
    @classmethod
    def _a_logger_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in URL_SCHEMES or not parts.netloc:
            raise ValueError(f"must be a URL: {', '.join(URL_SCHEMES)}://host/...")
        return url


def canonical_header(name: str) -> str:
    """A header name as Go's net/http writes it (x-b3-traceid: X-B3-Traceid)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def main(argv: Sequence[str]) -> int:
    settings = load_settings(EnableLoggingSettings, argv, PROG)
    source = settings.file
    try:
        text = source.read_bytes().decode("utf-8")
    except OSError as error:
        raise UsageError(f"{source}: cannot read it ({error.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{source}: not UTF-8 text, so not a YAML manifest") from None
    headers = settings.metadata_headers
    fields = LoggerFields(
        mode=settings.mode,
        url=settings.url,
        metadata_headers=None if headers is None else tuple(map(canonical_header, headers)),
    )
    try:
        result = set_logger(text, settings.component, fields)
    except ManifestError as error:
        raise UsageError(f"{source}: {error}") from None
    where = f"spec.{settings.component}"
    if not result.edited:
        raise UsageError(f"{source}: no InferenceService in it has {where}; nothing written")
    _write(result.text.encode("utf-8"), settings.output, source)
    for name in result.skipped:
        print(f"{PROG}: {name} has no {where}: left as it is", file=sys.stderr)
    print(f"{PROG}: logger set on {where} of {', '.join(result.edited)}", file=sys.stderr)
    return 0


def _write(content: bytes, output: str, source: Path) -> None:
    if output == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(content)
        return
    target = Path(output) if output else source
    try:
        _replace(target, content)
    except OSError as error:
        raise UsageError(f"{target}: cannot write it ({error.strerror})") from None


def _replace(target: Path, content: bytes) -> None:
    """`target` holds `content` whole or is as it was: written beside it, then renamed over it,
    with the old file's permissions."""
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, target.stat().st_mode & 0o7777)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
