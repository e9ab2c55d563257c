"""Validate deploy/k8s offline: core kinds against Kubernetes' own OpenAPI schemas (the ones the
`kubernetes-validate` package ships, strict: an unknown field is an error), KEDA's kinds against
the JSON schemas in deploy/k8s/schemas/ (taken from KEDA's CRDs). Every manifest file must be
listed in kustomization.yaml, and every listed file must exist.

    python scripts/check_k8s.py          # exit 1 and one line per problem when anything is wrong
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "deploy" / "k8s"
SCHEMA_DIR = K8S_DIR / "schemas"
KUSTOMIZATION = "kustomization.yaml"
# The oldest Kubernetes the manifests must load on (policy/v1 PDBs, batch/v1 Jobs' TTL).
KUBERNETES_VERSION = "1.29.0"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication.json",
}


def manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, document) for every document of every manifest file listed by kustomization.yaml."""
    for name in kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S_DIR / name).read_text()):
            if doc is not None:
                yield name, doc


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S_DIR / KUSTOMIZATION).read_text())
    return data


def crd_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    filename = CRD_SCHEMAS.get((api_version, kind))
    if filename is None:
        return None
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / filename).read_text())
    return schema


def problems() -> list[str]:
    found: list[str] = []
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in K8S_DIR.glob("*.yaml")} - {KUSTOMIZATION}
    found += [f"{name}: not listed in {KUSTOMIZATION}" for name in sorted(on_disk - listed)]
    found += [f"{KUSTOMIZATION}: lists {name}, which does not exist" for name in sorted(listed - on_disk)]
    for name, doc in manifests():
        where = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        schema = crd_schema(doc.get("apiVersion", ""), doc.get("kind", ""))
        try:
            if schema is not None:
                jsonschema.validate(doc, schema)
            else:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            path = "/".join(str(part) for part in exc.absolute_path)
            found.append(f"{where}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            found.append(f"{where}: {exc.message}")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    if not found:
        print(f"deploy/k8s: {sum(1 for _ in manifests())} manifests valid (Kubernetes {KUBERNETES_VERSION}, KEDA)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
