"""The three kinds as pydantic models: the single source of truth for CRDs and validation."""

from .alertconfig import AlertConfigSpec, AlertConfigStatus
from .alertrule import AlertRuleSpec
from .alertrule_status import AlertRuleStatus
from .channel import NotificationChannelSpec, NotificationChannelStatus
from .common import Condition, parse_duration
from .constants import API_VERSION, GROUP, VERSION
from .problems import Parsed, Problem
from .resources import KINDS, KindInfo
from .validation import parse_object, parse_spec

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
