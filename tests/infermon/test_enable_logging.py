"""`infermon enable-logging`: the logger block set, every other byte of the manifest kept.

On manifests written like KServe's examples (several resources, comments, quoting, flow-style
maps, an existing logger block): the lines that change are those of logger blocks only, the
result reads back with the logger set and validates against KServe's CRD schema, and each
refusal leaves the file as it was.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from infermon.enable_logging import INGEST_SERVICE_URL, canonical_header
from infermon.enable_logging import main as enable_logging
from infermon.errors import UsageError
from infermon.logger_block import LoggerFields, ManifestError, set_logger
from tests.deploy.validation import problems
from tests.fixtures.processes import REPO_ROOT

MANIFESTS = Path(__file__).parent / "manifests"
EXAMPLES = MANIFESTS / "kserve_examples.yaml"
NAMES = ["sklearn-iris", "sklearn-iris-v2", "torch-transformer"]


def run_infermon(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The installed `infermon` script, importing this checkout."""
    script = Path(sys.executable).parent / "infermon"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "infermon.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, cwd=REPO_ROOT, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip


def inference_services(text: str) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(text)
        if doc and doc.get("kind") == "InferenceService"
    }


def logger_lines(text: str, component: str = "predictor") -> set[int]:
    """The line numbers (0-based) each InferenceService's logger block spans."""
    lines: set[int] = set()
    for document in yaml.compose_all(text, Loader=yaml.SafeLoader):
        entry = child_entry(child(child(document, "spec"), component), "logger")
        if entry is not None:
            key, value = entry
            lines.update(range(key.start_mark.line, last_line(value) + 1))
    return lines


def child_entry(node: Node | None, key: str) -> tuple[Node, Node] | None:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key:
                return k, v
    return None


def child(node: Node | None, key: str) -> Node | None:
    entry = child_entry(node, key)
    return entry[1] if entry else None


def last_line(node: Node) -> int:
    if isinstance(node, MappingNode):
        return max([node.start_mark.line] + [last_line(v) for _, v in node.value])
    if isinstance(node, SequenceNode):
        return max([node.start_mark.line] + [last_line(v) for v in node.value])
    line: int = node.end_mark.line
    return line


def assert_only_logger_lines_changed(before: str, after: str, component: str = "predictor") -> None:
    """Line by line, what differs is inside a logger block: of the input where it is removed
    or changed, of the output where it is added or changed. Everything else is byte equal."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    old_logger, new_logger = logger_lines(before, component), logger_lines(after, component)
    changed = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        changed += 1
        assert set(range(i1, i2)) <= old_logger, "".join(old[i1:i2])
        assert set(range(j1, j2)) <= new_logger, "".join(new[j1:j2])
    assert changed


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_bytes(EXAMPLES.read_bytes())
    return path


def test_the_logger_of_every_inference_service_is_set_and_nothing_else_changes(
    manifest: Path,
) -> None:
    before = manifest.read_text()
    assert enable_logging([str(manifest), "--metadata-headers", "x-request-id,X-B3-TRACEID"]) == 0
    after = manifest.read_text()
    assert_only_logger_lines_changed(before, after)
    expected = {
        "mode": "all",
        "url": INGEST_SERVICE_URL,
        "metadataHeaders": ["X-Request-Id", "X-B3-Traceid"],
    }
    services = inference_services(after)
    assert list(services) == NAMES
    # The existing block keeps what was not set (its annotations), and its comments and quoting.
    assert services["sklearn-iris"]["spec"]["predictor"]["logger"] == {
        **expected,
        "metadataAnnotations": ["team"],
    }
    assert "      mode: all  # only requests for now\n" in after
    assert f'      url: "{INGEST_SERVICE_URL}"\n' in after
    for name in NAMES[1:]:
        assert services[name]["spec"]["predictor"]["logger"] == expected
    for service in services.values():
        assert problems(service) == []
    # Every other document, and every other part of these, reads back as it was.
    for old, new in zip(yaml.safe_load_all(before), yaml.safe_load_all(after), strict=True):
        if old and old["kind"] == "InferenceService":
            old["spec"]["predictor"].pop("logger", None)
            new["spec"]["predictor"].pop("logger")
        assert old == new


def test_a_new_block_goes_at_the_components_indentation_after_its_last_entry() -> None:
    text = (
        "apiVersion: serving.kserve.io/v1beta1\n"
        "kind: InferenceService\n"
        "metadata:\n"
        "    name: iris\n"
        "spec:\n"
        "    predictor:\n"
        "        sklearn:\n"
        "            storageUri: gs://models/iris   # the model\n"
        "\n"
        "# the end\n"
    )
    result = set_logger(text, "predictor", LoggerFields("response", "http://ingest.ns/"))
    assert result.text == text.replace(
        "# the model\n",
        "# the model\n"
        "        logger:\n"
        "            mode: response\n"
        "            url: http://ingest.ns/\n",
    )
    assert result.edited == ["iris"] and result.skipped == []


def test_flow_style_maps_get_a_flow_style_logger() -> None:
    text = (
        "apiVersion: serving.kserve.io/v1beta1\n"
        "kind: InferenceService\n"
        "metadata: {name: flow}\n"
        "spec: {predictor: {sklearn: {storageUri: 'gs://m'}}}\n"
        "---\n"
        "apiVersion: serving.kserve.io/v1beta1\n"
        "kind: InferenceService\n"
        "metadata: {name: flow-logger}\n"
        "spec:\n"
        "  predictor: {logger: {mode: request}, sklearn: {storageUri: gs://m}}\n"
    )
    fields = LoggerFields("all", "http://ingest.ns/", ("X-Request-Id",))
    after = set_logger(text, "predictor", fields).text
    assert after == text.replace(
        "'gs://m'}}",
        "'gs://m'}, logger: {mode: all, url: http://ingest.ns/, metadataHeaders: [X-Request-Id]}}",
    ).replace(
        "{logger: {mode: request}",
        "{logger: {mode: all, url: http://ingest.ns/, metadataHeaders: [X-Request-Id]}",
    )
    for service in inference_services(after).values():
        assert service["spec"]["predictor"]["logger"]["metadataHeaders"] == ["X-Request-Id"]
        assert problems(service) == []


def test_crlf_line_breaks_stay_crlf(manifest: Path) -> None:
    crlf = EXAMPLES.read_bytes().replace(b"\n", b"\r\n")
    manifest.write_bytes(crlf)
    assert enable_logging([str(manifest)]) == 0
    after = manifest.read_bytes()
    assert b"\n" not in after.replace(b"\r\n", b"")
    assert_only_logger_lines_changed(crlf.decode(), after.decode())
    for service in inference_services(after.decode()).values():
        assert service["spec"]["predictor"]["logger"]["url"] == INGEST_SERVICE_URL


def test_an_empty_logger_and_a_block_sequence_of_headers_are_replaced() -> None:
    text = (
        "apiVersion: serving.kserve.io/v1beta1\n"
        "kind: InferenceService\n"
        "metadata:\n"
        "  name: a\n"
        "spec:\n"
        "  predictor:\n"
        "    logger:\n"
        "    model: {modelFormat: {name: sklearn}}\n"
        "---\n"
        "apiVersion: serving.kserve.io/v1beta1\n"
        "kind: InferenceService\n"
        "metadata:\n"
        "  name: b\n"
        "spec:\n"
        "  predictor:\n"
        "    logger:\n"
        "      metadataHeaders:\n"
        "        - x-old\n"
        "      mode: request\n"
        "    model: {modelFormat: {name: sklearn}}\n"
    )
    fields = LoggerFields("all", "https://ingest.example.com/events", ("X-New",))
    after = set_logger(text, "predictor", fields).text
    assert_only_logger_lines_changed(text, after)
    for service in inference_services(after).values():
        assert service["spec"]["predictor"]["logger"] == {
            "mode": "all",
            "url": "https://ingest.example.com/events",
            "metadataHeaders": ["X-New"],
        }
        assert problems(service) == []


def test_the_transformer_logger_is_set_where_there_is_a_transformer(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = manifest.read_text()
    assert enable_logging([str(manifest), "--component", "transformer", "--mode", "request"]) == 0
    after = manifest.read_text()
    assert_only_logger_lines_changed(before, after, "transformer")
    services = inference_services(after)
    transformer = services["torch-transformer"]["spec"]["transformer"]
    assert transformer["logger"] == {"mode": "request", "url": INGEST_SERVICE_URL}
    assert problems(services["torch-transformer"]) == []
    assert "sklearn-iris has no spec.transformer: left as it is" in capsys.readouterr().err


def test_values_that_yaml_would_misread_are_quoted() -> None:
    text = "apiVersion: serving.kserve.io/v1\nkind: InferenceService\nspec: {predictor: {}}\n"
    after = set_logger(text, "predictor", LoggerFields("all", "http://h/a b#c", ("true",))).text
    logger = yaml.safe_load(after)["spec"]["predictor"]["logger"]
    assert logger == {"mode": "all", "url": "http://h/a b#c", "metadataHeaders": ["true"]}


def test_header_names_are_written_in_the_case_kserve_matches() -> None:
    assert canonical_header("x-b3-traceid") == "X-B3-Traceid"
    assert canonical_header("X-REQUEST-ID") == "X-Request-Id"


def test_standard_output_gets_the_result_and_the_file_stays(manifest: Path) -> None:
    before = manifest.read_bytes()
    result = run_infermon("enable-logging", str(manifest), "-o", "-", "--url", "http://i.ns/")
    assert result.returncode == 0, result.stderr
    assert manifest.read_bytes() == before
    services = inference_services(result.stdout.decode())
    assert [s["spec"]["predictor"]["logger"]["url"] for s in services.values()] == [
        "http://i.ns/"
    ] * 3
    assert_only_logger_lines_changed(before.decode(), result.stdout.decode())
    assert result.stderr.decode().count("\n") == 1  # which ones were set, on stderr


def test_output_to_another_file(manifest: Path, tmp_path: Path) -> None:
    before = manifest.read_bytes()
    output = tmp_path / "out.yaml"
    assert enable_logging([str(manifest), "-o", str(output)]) == 0
    assert manifest.read_bytes() == before
    assert list(inference_services(output.read_text())) == NAMES


def refused(path: Path, *args: str) -> str:
    """Runs the real command; asserts exit 2, a short message, the file untouched."""
    before = path.read_bytes() if path.exists() else None
    result = run_infermon("enable-logging", str(path), *args)
    message = result.stderr.decode().strip()
    assert result.returncode == 2, message
    assert result.stdout == b""
    assert "Traceback" not in message
    assert (path.read_bytes() if path.exists() else None) == before
    return message


def test_a_file_without_an_inference_service_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_bytes((MANIFESTS / "not_kserve.yaml").read_bytes())
    message = refused(path)
    assert len(message.splitlines()) == 1
    assert "no InferenceService in it" in message and str(path) in message


def test_invalid_yaml_is_refused_with_where(manifest: Path) -> None:
    manifest.write_text(EXAMPLES.read_text().replace("  name: torch-transformer", "  name: [x"))
    message = refused(manifest)
    assert len(message.splitlines()) == 1
    assert "not valid YAML" in message and "line" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--component", "canary"], "--component"),
        (["--mode", "everything"], "--mode"),
        (["--url", "ingest:8082"], "--url"),
    ],
)
def test_bad_options_are_refused(manifest: Path, args: list[str], expected: str) -> None:
    message = refused(manifest, *args)
    assert expected in message.splitlines()[0]
    assert len(message.splitlines()) <= 2  # the mistake, then where to find every option


def test_a_component_no_inference_service_has_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(EXAMPLES.read_text().split("# A transformer")[0])
    message = refused(path, "--component", "explainer")
    assert "no InferenceService in it has spec.explainer" in message


def test_unreadable_input_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\xff\xfe\x00kind: InferenceService")
    assert "not UTF-8" in refused(binary)
    with pytest.raises(UsageError, match="cannot read it"):
        enable_logging([str(tmp_path / "missing.yaml")])


def test_the_parser_errors_are_manifest_errors() -> None:
    with pytest.raises(ManifestError, match="not valid YAML"):
        set_logger("a: [", "predictor", LoggerFields("all", INGEST_SERVICE_URL))
    with pytest.raises(ManifestError, match="no InferenceService"):
        set_logger("", "predictor", LoggerFields("all", INGEST_SERVICE_URL))
