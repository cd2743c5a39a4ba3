"""What the real API server decides about an object of Klaxon's kinds *without* the webhook.

An independent model of kube-apiserver's pipeline for a custom resource, written from
Kubernetes' behaviour (and checked against a real v1.36 API server with the corpus), not from
Klaxon's validation code: kubectl's JSON encoding (no NaN/Inf), strict field validation
(unknown fields, kubectl's default), null pruning in objects, ObjectMeta rules (RFC 1123
names), the structural OpenAPI schema (with Kubernetes' integer and date-time rules), then
defaults and the CRD's CEL rules, which run only when the schema passed.

`decide(doc)` returns (stage, [(field path, message)]); no problems means the object is stored.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from klaxon.api import KINDS
from support import cel

ROOT = Path(__file__).resolve().parents[2]
API_VERSION = "klaxon.dev/v1alpha1"
SCHEMAS = {
    kind: yaml.safe_load((ROOT / "crds" / info.file_name).read_text())["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    for kind, info in KINDS.items()
}

# k8s.io/apimachinery/pkg/util/validation
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1123_LABEL_RE = re.compile(rf"^{_DNS1123_LABEL}$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_META_FIELDS = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
}  # fmt: skip
# kube-openapi strfmt: IsDateTime
_DATE_TIME_TIME = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")

Problem = tuple[str, str]


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _not_json(value: Any, path: str = "") -> list[Problem]:
    """kubectl turns YAML into JSON first; JSON has no NaN or infinity ("json: unsupported value")."""
    out: list[Problem] = []
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            out.append((where, f"json: unsupported value: {item}"))
        elif isinstance(item, dict):
            stack += [(v, _join(where, k)) for k, v in item.items()]
        elif isinstance(item, list):
            stack += [(v, _join(where, i)) for i, v in enumerate(item)]
    return out


def _unknown_fields(schema: dict[str, Any], value: Any, path: str) -> list[Problem]:
    out: list[Problem] = []
    stack = [(schema, value, path)]
    while stack:
        node, item, where = stack.pop()
        if isinstance(item, dict) and "properties" in node:
            for k, v in item.items():
                if k in node["properties"]:
                    stack.append((node["properties"][k], v, _join(where, k)))
                elif not isinstance(node.get("additionalProperties"), dict):
                    out.append((_join(where, k), f'unknown field "{_join(where, k)}"'))
        elif isinstance(item, dict) and isinstance(node.get("additionalProperties"), dict):
            stack += [(node["additionalProperties"], v, _join(where, k)) for k, v in item.items()]
        elif isinstance(item, list) and isinstance(node.get("items"), dict):
            stack += [(node["items"], v, _join(where, i)) for i, v in enumerate(item)]
    return out


def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def _date_time(value: Any) -> bool:
    if not isinstance(value, str):
        return True  # the type check reports it
    if len(value) < 4:
        return False
    parts = value.lower().split("t")
    if len(parts) < 2 or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", parts[0]):
        return False
    try:
        import datetime

        datetime.date.fromisoformat(parts[0])
    except ValueError:
        return False
    m = _DATE_TIME_TIME.match(parts[1])
    return bool(m) and m.group(1) <= "23" and m.group(2) <= "59" and m.group(3) <= "59"


def _qualified(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def _metadata(meta: Any) -> list[Problem]:
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        return [("metadata", "must be an object")]
    out: list[Problem] = []
    name, generate = meta.get("name"), meta.get("generateName")
    if not name and not generate:
        out.append(("metadata.name", "Required value: name or generateName is required"))
    for field, value, prefix in (("name", name, False), ("generateName", generate, True)):
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            out.append((f"metadata.{field}", "must be a string"))
            continue
        text = value.rstrip("-") if prefix else value
        if len(text) > 253 or not _DNS1123_SUBDOMAIN.match(text):
            out.append((f"metadata.{field}", f"Invalid value: {value!r}: a lowercase RFC 1123 subdomain"))
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or len(ns) > 63 or not _DNS1123_LABEL_RE.match(ns)):
        out.append(("metadata.namespace", f"Invalid value: {ns!r}: a lowercase RFC 1123 label"))
    for field in ("labels", "annotations"):
        values = meta.get(field)
        if values is None:
            continue
        if not isinstance(values, dict):
            out.append((f"metadata.{field}", "must be an object"))
            continue
        for k, v in values.items():
            if not _qualified(k if field == "labels" else k.lower()):
                out.append((f"metadata.{field}", f"Invalid value: {k!r}: a qualified name"))
            if v is not None and not isinstance(v, str):
                out.append((f"metadata.{field}.{k}", "must be a string"))
            elif field == "labels" and v and (len(v) > 63 or not _LABEL_VALUE.match(v)):
                out.append((f"metadata.{field}", f"Invalid value: {v!r}: a label value"))
    return out


def _is_integer(_: Any, value: Any) -> bool:
    """Kubernetes' integer: any JSON number without a fraction (2.0 is an integer there)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(_: Any, value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPES = jsonschema.Draft4Validator.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("date-time")(_date_time)
_Validator = jsonschema.validators.extend(jsonschema.Draft4Validator, type_checker=_TYPES)


def _schema_problems(schema: dict[str, Any], doc: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    for err in _Validator(schema, format_checker=_FORMATS).iter_errors(doc):
        path = ""
        for part in err.absolute_path:
            path = _join(path, part)
        if err.validator == "required":
            missing = re.search(r"'([^']+)' is a required property", err.message)
            path = _join(path, missing.group(1)) if missing else path
        out.append((path, f"{err.validator}: {err.message[:200]}"))
    return out


def defaulted(doc: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server stores it (and sends it to the webhook): nulls pruned, defaults set."""
    return cel.apply_defaults(SCHEMAS[doc["kind"]], _prune_nulls(doc))  # type: ignore[no-any-return]


def decide(doc: Any) -> tuple[str, list[Problem]]:
    """(stage, problems): the stage that refused ("client", "decode", "schema", "cel") or "stored"."""
    if not isinstance(doc, dict):
        return "client", [("", "not an object")]
    bad = _not_json(doc)
    if bad:
        return "client", bad
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") not in KINDS:
        where = "apiVersion" if doc.get("apiVersion") != API_VERSION else "kind"
        return "client", [(where, f"no matches for kind {doc.get('kind')!r} in version {doc.get('apiVersion')!r}")]
    schema = SCHEMAS[doc["kind"]]
    unknown = [
        (k, f'unknown field "{k}"') for k in doc if k not in ("apiVersion", "kind", "metadata", "spec", "status")
    ]
    if isinstance(doc.get("metadata"), dict):
        unknown += [
            (f"metadata.{k}", f'unknown field "metadata.{k}"') for k in doc["metadata"] if k not in _META_FIELDS
        ]
    unknown += _unknown_fields(schema["properties"]["spec"], doc.get("spec"), "spec")
    if unknown:
        return "decode", unknown
    obj = _prune_nulls(doc)
    problems = _metadata(obj.get("metadata")) + _schema_problems(schema, obj)
    if problems:
        return "schema", problems
    obj = cel.apply_defaults(schema, obj)
    found = cel.violations(schema["properties"]["spec"], obj["spec"], "spec")
    if found:
        return "cel", [(v.path, v.message) for v in found]
    return "stored", []
