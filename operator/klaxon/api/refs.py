"""What an AlertRule takes from its AlertConfig: which AlertConfig it uses, whether that one
serves the rule's namespace, the interval the rule is evaluated at; and which namespaces an
AlertConfig's evaluator follows (pure)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .alertconfig import AlertConfigSpec
from .alertrule import AlertRuleSpec, Level
from .constants import DEFAULT_CONFIG, DEFAULT_INTERVAL


def config_key(namespace: str, spec: AlertRuleSpec | Mapping[str, Any] | None) -> tuple[str, str]:
    """(namespace, name) of the AlertConfig a rule in ``namespace`` uses: ``spec.configRef``, by
    default the AlertConfig named ``default`` in the rule's namespace.

    Takes the parsed spec or the raw one (so that invalid rules can be indexed and filtered too).
    """
    if isinstance(spec, AlertRuleSpec):
        ref = spec.config_ref
        return (ref.namespace or namespace, ref.name) if ref is not None else (namespace, DEFAULT_CONFIG)
    raw = spec.get("configRef") if isinstance(spec, Mapping) else None
    if not isinstance(raw, Mapping) or not raw.get("name"):
        return (namespace, DEFAULT_CONFIG)
    return (str(raw.get("namespace") or namespace), str(raw["name"]))


def effective_interval(spec: AlertRuleSpec, config: AlertConfigSpec | None = None) -> str:
    """The interval a rule is evaluated at (a duration): its own, else its AlertConfig's default,
    else 1m."""
    default = config.defaults.interval if config is not None else None
    return spec.evaluation.interval or default or DEFAULT_INTERVAL


def effective_for(spec: AlertRuleSpec, level: Level | None = None) -> str:
    """How long a level (or, without one, the rule's condition) must hold: the level's own ``for``,
    else ``trigger.for`` (as a level's ``violations`` falls back to ``trigger.requiredViolations``)."""
    own = level.for_ if level is not None else None
    return own or spec.trigger.for_


def namespace_allowed(rule_namespace: str, *, config_namespace: str, allowed: Collection[str]) -> bool:
    """A rule may use an AlertConfig of its own namespace, or one listing its namespace (or '*')."""
    return rule_namespace == config_namespace or "*" in allowed or rule_namespace in allowed


def granted_namespaces(config: Mapping[str, Any]) -> list[str]:
    """``status.grantedNamespaces`` of an AlertConfig object: where the operator gave its evaluator
    access (the namespaces holding its rules, with allowedNamespaces '*')."""
    return [str(n) for n in ((config.get("status") or {}).get("grantedNamespaces") or [])]


def rules_scope(config_namespace: str, allowed_namespaces: Collection[str], granted: Collection[str] = ()) -> list[str]:
    """The namespaces an AlertConfig's evaluator lists and watches rules in: its own, those the
    AlertConfig lists, and with '*' those the operator granted it. Never cluster-wide: its Roles
    are per namespace."""
    if "*" in allowed_namespaces:
        return sorted({config_namespace, *granted})
    return sorted({config_namespace, *allowed_namespaces})
