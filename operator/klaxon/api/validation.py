"""Turning untrusted documents into typed objects, with problems people can act on.

Every problem names the field, what is wrong and what is allowed. `klaxon validate`, the
admission webhook and the operator all come through here, and the CRD's schema and CEL rules
say the same wherever CEL can: one verdict, naming the same field, at every layer. What CEL
cannot express (PromQL, templates, RE2) the webhook adds.

The input is read the way the API server reads it: explicit nulls in objects mean unset,
a whole-number float is an integer, only camelCase names exist.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from .checks import CHECKS
from .common import (
    K8S_LABEL_VALUE_PATTERN,
    K8S_NAME_PATTERN,
    NAMESPACE_PATTERN,
    QUALIFIED_NAME_PATTERN,
)
from .constants import API_VERSION
from .problems import PATTERN_HINTS, Parsed, Problem, from_validation_error
from .resources import KINDS

# --- reading untrusted input as the API server does ---------------------------------------

# Deeper than any schema here: a subtree below it is wrong already where it starts, so cutting
# it off keeps every verdict and field path and no input can exhaust the stack.
MAX_DEPTH = 64


def normalize(value: Any) -> Any:
    """``value`` as the API server stores it: nulls in objects dropped (null means unset), whole
    floats as integers, nesting cut at MAX_DEPTH. Iterative: no input is too deep for it."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 0)]
    while stack:
        item, parent, key, depth = stack.pop()
        if isinstance(item, dict):
            out: Any = {}
            if depth < MAX_DEPTH:
                for k, v in item.items():
                    if v is not None:
                        out[k] = None
                        stack.append((v, out, k, depth + 1))
        elif isinstance(item, list):
            out = [None] * len(item) if depth < MAX_DEPTH else []
            if depth < MAX_DEPTH:
                for i, v in enumerate(item):
                    stack.append((v, out, i, depth + 1))
        elif isinstance(item, float) and item.is_integer() and abs(item) < 2**63:
            out = int(item)
        else:
            out = item
        parent[key] = out
    return root[0]


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON data")


@lru_cache(maxsize=8)
def _spec_schema(kind: str) -> dict[str, Any]:
    from . import crdgen  # here: `python -m klaxon.api.crdgen` must not find it imported already

    return crdgen.model_schema(KINDS[kind].spec, "spec")


def _unknown_null_fields(schema: dict[str, Any], value: Any, path: str) -> list[Problem]:
    """Unknown fields set to null: pruning would hide them, but the API server refuses them first."""
    out: list[Problem] = []
    stack = [(schema, value, path)]
    while stack:
        node, item, where = stack.pop()
        if isinstance(item, dict) and "properties" in node:
            for k, v in item.items():
                if k in node["properties"]:
                    stack.append((node["properties"][k], v, f"{where}.{k}"))
                elif v is None:
                    out.append(Problem(f"{where}.{k}", "unknown field", ", ".join(sorted(node["properties"]))))
        elif isinstance(item, dict) and isinstance(node.get("additionalProperties"), dict):
            stack += [(node["additionalProperties"], v, f"{where}.{k}") for k, v in item.items()]
        elif isinstance(item, list) and isinstance(node.get("items"), dict):
            stack += [(node["items"], v, f"{where}[{i}]") for i, v in enumerate(item)]
    return out


def parse_spec(kind: str, spec: Any, prefix: str = "spec") -> tuple[BaseModel | None, list[Problem]]:
    info = KINDS[kind]
    unknown = _unknown_null_fields(_spec_schema(kind), spec, prefix)
    spec = normalize(spec)
    if spec is None:
        return None, [Problem(prefix, "required field is missing")]
    if unknown:
        _, problems = parse_spec(kind, spec, prefix)
        return None, unknown + problems
    try:
        # JSON + strict + aliases only: the typing the API server applies ("1" is not a number
        # there either) and its field names (camelCase; `split_by` is an unknown field).
        text = json.dumps(spec, default=_json_default)
        model = info.spec.model_validate_json(text, strict=True, by_alias=True, by_name=False)
    except ValidationError as exc:
        return None, from_validation_error(exc, info.spec, prefix)
    except (TypeError, ValueError) as exc:  # not JSON data at all (a YAML-only type)
        return None, [Problem(prefix, f"not JSON data: {exc}")]
    return model, CHECKS[kind](model, prefix)


# --- metadata and the object around the spec ----------------------------------------------

TOP_LEVEL_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
OBJECT_META_FIELDS = (
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
)
MAX_ANNOTATIONS_BYTES = 256 * 1024


def _dns_problem(path: str, value: Any, pattern: str, limit: int, what: str) -> list[Problem]:
    if not isinstance(value, str):
        return [Problem(path, f"must be a string, got {type(value).__name__}", "a string")]
    if len(value) > limit:
        return [Problem(path, f"too long ({len(value)} characters)", f"at most {limit} characters")]
    if not re.fullmatch(pattern, value):
        return [Problem(path, f"invalid value {value!r}", what)]
    return []


def _map_problems(path: str, value: Any, values_too: bool) -> list[Problem]:
    if not isinstance(value, dict):
        return [Problem(path, f"must be an object, got {type(value).__name__}", "an object")]
    out: list[Problem] = []
    for k, v in value.items():
        prefix_part = k.split("/", 1)[0] if "/" in k else ""
        # Kubernetes checks annotation keys lower-cased, label keys as written.
        if not re.fullmatch(QUALIFIED_NAME_PATTERN, k if values_too else k.lower()) or len(prefix_part) > 253:
            out.append(Problem(path, f"invalid key {k!r}", PATTERN_HINTS[QUALIFIED_NAME_PATTERN]))
        if v is not None and not isinstance(v, str):
            out.append(Problem(f"{path}.{k}", f"must be a string, got {type(v).__name__}", "a string"))
        elif values_too and isinstance(v, str) and (len(v) > 63 or not re.fullmatch(K8S_LABEL_VALUE_PATTERN, v)):
            out.append(Problem(path, f"invalid value {v!r} of {k!r}", PATTERN_HINTS[K8S_LABEL_VALUE_PATTERN]))
    if not values_too and sum(len(k) + len(v or "") for k, v in value.items()) > MAX_ANNOTATIONS_BYTES:
        out.append(Problem(path, "too large", f"at most {MAX_ANNOTATIONS_BYTES} bytes in all"))
    return out


def metadata_problems(meta: Any) -> list[Problem]:
    """The checks the API server applies to ObjectMeta before anything else sees the object."""
    if meta is None:
        return [Problem("metadata.name", "required field is missing")]
    if not isinstance(meta, dict):
        return [Problem("metadata", f"must be an object, got {type(meta).__name__}", "an object")]
    p = [
        Problem(f"metadata.{k}", "unknown field", ", ".join(OBJECT_META_FIELDS))
        for k in meta
        if k not in OBJECT_META_FIELDS
    ]
    name, generate = meta.get("name"), meta.get("generateName")
    if name in (None, "") and generate in (None, ""):
        p.append(Problem("metadata.name", "required field is missing"))
    elif name not in (None, ""):
        p += _dns_problem("metadata.name", name, K8S_NAME_PATTERN, 253, PATTERN_HINTS[K8S_NAME_PATTERN])
    else:
        stem = generate.rstrip("-") if isinstance(generate, str) else generate
        p += _dns_problem("metadata.generateName", stem, K8S_NAME_PATTERN, 253, PATTERN_HINTS[K8S_NAME_PATTERN])
    if meta.get("namespace") is not None:
        p += _dns_problem(
            "metadata.namespace", meta["namespace"], NAMESPACE_PATTERN, 63, PATTERN_HINTS[NAMESPACE_PATTERN]
        )
    if meta.get("labels") is not None:
        p += _map_problems("metadata.labels", meta["labels"], values_too=True)
    if meta.get("annotations") is not None:
        p += _map_problems("metadata.annotations", meta["annotations"], values_too=False)
    return p


def parse_object(doc: Any) -> Parsed:
    """Validate one manifest of one of the three kinds; never raises for bad input."""
    if not isinstance(doc, dict):
        return Parsed("", "", None, None, [Problem("", f"document must be a mapping, got {type(doc).__name__}")])
    kind = doc.get("kind")
    raw_meta = doc.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    name = meta.get("name") or meta.get("generateName") or ""
    ns = meta.get("namespace")
    problems: list[Problem] = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"unknown apiVersion {doc.get('apiVersion')!r}", API_VERSION))
    if kind not in KINDS:
        problems.append(Problem("kind", f"unknown kind {kind!r}", ", ".join(KINDS)))
        return Parsed(str(kind or ""), str(name), ns if isinstance(ns, str) else None, None, problems)
    problems += [
        Problem(str(k), "unknown field", ", ".join(TOP_LEVEL_FIELDS)) for k in doc if k not in TOP_LEVEL_FIELDS
    ]
    problems += metadata_problems(normalize(raw_meta) if isinstance(raw_meta, dict) else raw_meta)
    spec, spec_problems = parse_spec(str(kind), doc.get("spec"))
    return Parsed(str(kind), str(name), ns if isinstance(ns, str) else None, spec, problems + spec_problems)
