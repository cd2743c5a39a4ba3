"""The three kinds as pydantic models: the single source of truth for CRDs and validation.

The names below load on first use (PEP 562): ``klaxon.api.constants`` or ``klaxon.api.manifests``
alone must not pay for building the pydantic models (``klaxon --version`` imports neither).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .alertconfig import AlertConfigSpec, AlertConfigStatus
    from .alertrule import AlertRuleSpec
    from .alertrule_status import AlertRuleStatus
    from .channel import NotificationChannelSpec, NotificationChannelStatus
    from .common import Condition, parse_duration
    from .constants import API_VERSION, GROUP, VERSION
    from .problems import Parsed, Problem
    from .resources import KINDS, KindInfo
    from .validation import parse_object, parse_spec

_WHERE = {
    "AlertConfigSpec": "alertconfig",
    "AlertConfigStatus": "alertconfig",
    "AlertRuleSpec": "alertrule",
    "AlertRuleStatus": "alertrule_status",
    "NotificationChannelSpec": "channel",
    "NotificationChannelStatus": "channel",
    "Condition": "common",
    "parse_duration": "common",
    "API_VERSION": "constants",
    "GROUP": "constants",
    "VERSION": "constants",
    "KINDS": "resources",
    "KindInfo": "resources",
    "Parsed": "problems",
    "Problem": "problems",
    "parse_object": "validation",
    "parse_spec": "validation",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "AlertConfigSpec",
    "AlertConfigStatus",
    "AlertRuleSpec",
    "AlertRuleStatus",
    "Condition",
    "KindInfo",
    "NotificationChannelSpec",
    "NotificationChannelStatus",
    "Parsed",
    "Problem",
    "parse_duration",
    "parse_object",
    "parse_spec",
]
