"""The world as the notifier knows it: AlertRules (with their ack annotation), AlertConfigs and
NotificationChannels, as the operator or the evaluator hands them over, and the ``RulePolicy``
they make for a rule."""

from __future__ import annotations

from collections.abc import Mapping

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec
from ..api.channel import NotificationChannelSpec
from ..api.constants import DEFAULT_CONFIG
from ..api.refs import config_key
from .policy import RulePolicy, parse_ack

ACK_ANNOTATION = "klaxon.dev/ack"

Key = tuple[str, str]


class Registry:
    """Specs by (namespace, name); a rule is kept with its ``klaxon.dev/ack`` annotation."""

    def __init__(self) -> None:
        self.rules: dict[Key, tuple[AlertRuleSpec, str | None]] = {}
        self.configs: dict[Key, AlertConfigSpec] = {}
        self.channels: dict[Key, NotificationChannelSpec] = {}

    def set_rule(
        self, namespace: str, name: str, spec: AlertRuleSpec, annotations: Mapping[str, str] | None = None
    ) -> None:
        self.rules[(namespace, name)] = (spec, (annotations or {}).get(ACK_ANNOTATION))

    def config_for(self, namespace: str, rule: AlertRuleSpec | None) -> AlertConfigSpec | None:
        return self.configs.get(config_key(namespace, rule))

    def policy(self, namespace: str, rule_name: str) -> tuple[RulePolicy, bool]:
        """The rule's policy, and whether its AlertConfig allows private channel addresses."""
        spec, ack = self.rules.get((namespace, rule_name), (None, None))
        config = self.config_for(namespace, spec)
        ids, before = parse_ack(ack)
        allow = bool(config and config.allow_private_channel_addresses)
        return RulePolicy.from_specs(spec, config, ids, before), allow

    def allow_private(self, namespace: str) -> bool:
        """Whether the namespace's default AlertConfig allows private channel addresses (for what
        belongs to no rule: channel readiness and test deliveries)."""
        cfg = self.configs.get((namespace, DEFAULT_CONFIG))
        return bool(cfg and cfg.allow_private_channel_addresses)

    def in_flight_limit(self, channel: Key) -> int:
        """The channel's ``rateLimit.maxInFlight``; 1 for a channel not known (yet)."""
        spec = self.channels.get(channel)
        return spec.rate_limit.max_in_flight if spec is not None else 1
