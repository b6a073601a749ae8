"""The manifests checked against the vendored schemas (schemas/README.md), offline.

Unknown fields are errors, as with `kubectl apply` (server-side field validation, Strict): the
Kubernetes schemas are closed already; the InferenceService schema is closed here wherever
KServe's CRD does not keep unknown fields on purpose.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).parent / "schemas"
OBJECT_META = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
KSERVE_API_VERSION = "serving.kserve.io/v1beta1"


@functools.cache
def _kubernetes() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / "kubernetes-v1.33-strict.json").read_text())
    return loaded


def _closed(schema: Any) -> Any:
    """Every object schema with listed properties refuses others (as the API server's strict
    field validation does), unless it keeps unknown fields."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    kubernetes = _kubernetes()
    definitions = kubernetes["$defs"]
    validators = {
        key: jsonschema.Draft202012Validator({**schema, "$defs": definitions})
        for key, schema in kubernetes["kinds"].items()
    }
    crd = json.loads((SCHEMAS / "kserve-inferenceservice-v1beta1.json").read_text())
    inference_service = _closed(crd)
    # The CRD leaves metadata to the API server, which checks it as any object's metadata.
    inference_service["properties"]["metadata"] = {"$ref": OBJECT_META}
    validators[f"{KSERVE_API_VERSION}/InferenceService"] = jsonschema.Draft202012Validator(
        {**inference_service, "$defs": definitions}
    )
    return validators


def problems(document: dict[str, Any]) -> list[str]:
    """What the schema of the document's kind finds wrong in it; a kind without one is one."""
    key = f"{document.get('apiVersion')}/{document.get('kind')}"
    validator = _validators().get(key)
    if validator is None:
        return [f"no vendored schema for {key}"]
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
