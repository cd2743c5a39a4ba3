"""The JSON Schema of `klaxon preview -o json` (operator/klaxon/preview/schema.json)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def preview_schema() -> dict[str, Any]:
    text = resources.files("klaxon.preview").joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
