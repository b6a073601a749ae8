"""Rebuild the vendored schemas in this folder (run by hand; the tests only read the JSON).

    python tests/deploy/schemas/vendor.py KUBERNETES_SCHEMA_DIR KSERVE_CRD_YAML

KUBERNETES_SCHEMA_DIR: `kubernetes_validate/kubernetes-json-schema/v1.33.0-local-strict` from
the `kubernetes-validate` wheel (PyPI, 1.37.0; Apache-2.0), JSON schemas generated from the
Kubernetes OpenAPI document, with `additionalProperties: false` on every object ("strict").
KSERVE_CRD_YAML: `config/crd/full/serving.kserve.io_inferenceservices.yaml` of kserve/kserve
(Apache-2.0). Descriptions are dropped to keep the files small; nothing else changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
# The kinds the manifests use: file name in the schema folder -> (apiVersion, kind).
KUBERNETES_KINDS = {
    "deployment-apps-v1.json": ("apps/v1", "Deployment"),
    "service-v1.json": ("v1", "Service"),
    "namespace-v1.json": ("v1", "Namespace"),
    "configmap-v1.json": ("v1", "ConfigMap"),
    "secret-v1.json": ("v1", "Secret"),
}
# The kinds' files refer to the definitions file, the definitions to each other.
DEFINITION_REFS = ("/api/_definitions.json#/$defs/", "#/$defs/")


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: without_descriptions(value)
            for key, value in node.items()
            if not (key == "description" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [without_descriptions(item) for item in node]
    return node


def local_refs(node: Any, found: set[str]) -> Any:
    """Point each reference into this file's `$defs`, noting the names referred to."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(DEFINITION_REFS):
                name = value.rsplit("/", 1)[1]
                found.add(name)
                out[key] = "#/$defs/" + name
            else:
                out[key] = local_refs(value, found)
        return out
    if isinstance(node, list):
        return [local_refs(item, found) for item in node]
    return node


def kubernetes_schemas(folder: Path) -> dict[str, Any]:
    definitions = json.loads((folder / "_definitions.json").read_text())["$defs"]
    kinds: dict[str, Any] = {}
    wanted: set[str] = set()
    for file_name, (api_version, kind) in KUBERNETES_KINDS.items():
        schema = json.loads((folder / file_name).read_text())
        schema.pop("$id", None)
        schema.pop("$schema", None)
        kinds[f"{api_version}/{kind}"] = local_refs(without_descriptions(schema), wanted)
    kept: dict[str, Any] = {}
    while wanted - kept.keys():  # the definitions reachable from the kinds, and no others
        name = sorted(wanted - kept.keys())[0]
        kept[name] = local_refs(without_descriptions(definitions[name]), wanted)
    return {"kinds": kinds, "$defs": dict(sorted(kept.items()))}


def inference_service_schema(crd_file: Path) -> dict[str, Any]:
    crd = yaml.load(crd_file.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema: dict[str, Any] = without_descriptions(version["schema"]["openAPIV3Schema"])
    return schema


def main(argv: list[str]) -> None:
    kubernetes_folder, crd_file = Path(argv[0]), Path(argv[1])
    for name, content in (
        ("kubernetes-v1.33-strict.json", kubernetes_schemas(kubernetes_folder)),
        ("kserve-inferenceservice-v1beta1.json", inference_service_schema(crd_file)),
    ):
        (HERE / name).write_text(json.dumps(content, separators=(",", ":"), sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
