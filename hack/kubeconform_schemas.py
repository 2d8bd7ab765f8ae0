"""Prepare local JSON schemas for kubeconform, so validation needs no downloads.

    python hack/kubeconform_schemas.py k8s OUT_DIR KUBE_VERSION
        Copies the strict schemas of Kubernetes KUBE_VERSION (e.g. 1.34.0) that the
        kubernetes-validate wheel ships to OUT_DIR/vKUBE_VERSION-local-strict/, rewriting their
        root-relative `$ref`s ("/api/_definitions.json#...", resolved against an https `$id`) into
        absolute file URLs that kubeconform's file loader resolves. Use with -schema-location
        OUT_DIR/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/KIND
        where KIND is {{ .ResourceKind }}{{ .KindSuffix }}.json (all one argument)

    python hack/kubeconform_schemas.py crds OUT_DIR FILE...      (FILE may be - for stdin)
        Every CustomResourceDefinition (apiextensions.k8s.io/v1) in the YAML files yields one schema
        per served version at OUT_DIR/<group>/<kind>_<version>.json (kind lower-cased). Use with
        -schema-location 'OUT_DIR/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'
        The schemas come straight from each CRD's openAPIV3Schema, so the MatchWatcher schema stays
        single-sourced in deploy/crds/. They are strict like kubeconform's `-strict` schemas: an
        object that lists its properties accepts no others, unless it preserves unknown fields.

Both print what they wrote.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import yaml

# OpenAPI v3 keys that JSON Schema has no use for, or that mean something else there.
_DROPPED = (
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
)
_INT_FORMATS = ("int32", "int64")
_ROOT_REF = '"/api/_definitions.json#'


def kubernetes_schema_root() -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or spec.origin is None:
        raise SystemExit("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return Path(spec.origin).parent / "kubernetes-json-schema"


def write_kubernetes_schemas(out_dir: Path, kube_version: str) -> Path:
    name = f"v{kube_version.removeprefix('v')}-local-strict"
    source = kubernetes_schema_root() / name
    if not source.is_dir():
        raise SystemExit(f"kubernetes-validate has no schemas for {kube_version} ({source})")
    target = out_dir / name
    target.mkdir(parents=True, exist_ok=True)
    definitions = '"' + (target.resolve() / "_definitions.json").as_uri() + "#"
    for path in source.glob("*.json"):
        text = path.read_text()
        (target / path.name).write_text(text.replace(_ROOT_REF, definitions))
    return target


def to_json_schema(node: Any) -> Any:
    """Convert one node of a structural OpenAPI v3 schema into JSON Schema (draft 7)."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "format" and value in _INT_FORMATS):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        else:
            out[key] = to_json_schema(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    return out


def crd_version_schema(group: str, version: str, kind: str, openapi: Any) -> dict[str, Any]:
    schema: dict[str, Any] = to_json_schema(openapi)
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version}"]}
    properties["kind"] = {"type": "string", "enum": [kind]}
    # Whatever the CRD says about metadata, the API server applies ObjectMeta: accept any.
    properties["metadata"] = {"type": "object"}
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return schema


def write_crd_schemas(out_dir: Path, documents: list[Any]) -> list[Path]:
    written: list[Path] = []
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        if doc.get("apiVersion") != "apiextensions.k8s.io/v1":
            raise SystemExit(f"unsupported CRD apiVersion {doc.get('apiVersion')!r}")
        spec = doc["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            openapi = (version.get("schema") or {}).get("openAPIV3Schema")
            if not version.get("served", True) or openapi is None:
                continue
            target = out_dir / group / f"{kind.lower()}_{version['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            schema = crd_version_schema(group, version["name"], kind, openapi)
            target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            written.append(target)
    return written


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "k8s":
        print(write_kubernetes_schemas(Path(argv[1]), argv[2]))
        return 0
    if len(argv) >= 3 and argv[0] == "crds":
        documents: list[Any] = []
        for name in argv[2:]:
            text = sys.stdin.read() if name == "-" else Path(name).read_text()
            documents.extend(yaml.safe_load_all(text))
        for path in write_crd_schemas(Path(argv[1]), documents):
            print(path)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
