"""Reference resolution between the kinds, pure: from in-memory views (kopf indices) to conditions.

A rule references an AlertConfig (``spec.configRef``, default ``default`` in its namespace) and
NotificationChannels (``spec.notify.channels`` in its namespace, else the config's default
channels in the config's namespace). Channels reference Secret keys.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec
from ..api.refs import config_key, namespace_allowed
from ..api.validation import parse_spec
from .build import secret_refs
from .conditions import Cond

Key = tuple[str, str]  # (namespace, name)
Body = dict[str, Any]


class SingleView(Mapping[Key, Any]):
    """A kopf index (key → store of values) seen as key → its one value."""

    def __init__(self, index: Mapping[Any, Any] | None) -> None:
        self.index: Mapping[Any, Any] = index if index is not None else {}

    def __getitem__(self, key: Key) -> Any:
        for value in self.index[key]:
            return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[Key]:
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


def resolve_config(
    namespace: str, spec: AlertRuleSpec, configs: Mapping[Key, Body]
) -> tuple[Key, AlertConfigSpec | None, Cond | None]:
    """The rule's config, or the condition that says why it cannot be used."""
    key = config_key(namespace, spec)
    body = configs.get(key)
    where = f"{key[0]}/{key[1]}"
    if body is None:
        return (
            key,
            None,
            Cond(
                "ConfigResolved",
                False,
                "ConfigNotFound",
                f"AlertConfig {where} does not exist; the rule is applied as soon as it appears",
            ),
        )
    model, problems = parse_spec("AlertConfig", body.get("spec"))
    if problems or not isinstance(model, AlertConfigSpec):
        return (
            key,
            None,
            Cond(
                "ConfigResolved",
                False,
                "ConfigInvalid",
                f"AlertConfig {where} is invalid: " + "; ".join(map(str, problems)),
            ),
        )
    if not namespace_allowed(namespace, config_namespace=key[0], allowed=model.allowed_namespaces):
        return (
            key,
            None,
            Cond(
                "ConfigResolved",
                False,
                "CrossNamespaceRefDenied",
                f"AlertConfig {where} does not allow rules from namespace {namespace} "
                f"(spec.allowedNamespaces)",
            ),
        )
    return key, model, None


def rule_channels(namespace: str, spec: AlertRuleSpec, key: Key, config: AlertConfigSpec | None) -> list[Key]:
    if spec.notify.channels:
        return [(namespace, c) for c in spec.notify.channels]
    if config is not None:
        return [(key[0], c) for c in config.defaults.channels]
    return []


def raw_rule_channels(namespace: str, spec: Mapping[str, Any] | None) -> list[Key]:
    notify = (spec or {}).get("notify") if isinstance(spec, Mapping) else None
    channels = notify.get("channels") if isinstance(notify, Mapping) else None
    return [(namespace, str(c)) for c in channels or [] if isinstance(c, str)]


def channel_condition(body: Mapping[str, Any], secrets: Mapping[Key, Collection[str]]) -> Cond:
    """A channel is Ready when its spec is valid and every Secret key it names exists."""
    namespace = str((body.get("metadata") or {}).get("namespace") or "")
    model, problems = parse_spec("NotificationChannel", body.get("spec"))
    if problems or model is None:
        return Cond("Ready", False, "InvalidSpec", "; ".join(map(str, problems)))
    missing_secrets: list[str] = []
    missing_keys: list[str] = []
    for path, name, key in secret_refs(body.get("spec")):
        keys = secrets.get((namespace, name))
        if keys is None:
            missing_secrets.append(f"{path}: Secret {name} not found")
        elif key not in keys:
            missing_keys.append(f"{path}: key {key!r} not found in Secret {name}")
    if missing_secrets:
        return Cond("Ready", False, "SecretNotFound", "; ".join(missing_secrets + missing_keys))
    if missing_keys:
        return Cond("Ready", False, "SecretKeyNotFound", "; ".join(missing_keys))
    return Cond("Ready", True, "Ready", "configuration valid and every referenced Secret key exists")


def check_channels(
    keys: list[Key], channels: Mapping[Key, Body], secrets: Mapping[Key, Collection[str]]
) -> Cond | None:
    missing = [f"{ns}/{name}" for ns, name in keys if (ns, name) not in channels]
    if missing:
        return Cond(
            "ChannelsReady",
            False,
            "ChannelNotFound",
            "NotificationChannel " + ", ".join(missing) + " does not exist",
        )
    for ns, name in keys:
        cond = channel_condition(channels[(ns, name)], secrets)
        if cond.ok is not True:
            return Cond(
                "ChannelsReady",
                False,
                "ChannelNotReady",
                f"NotificationChannel {ns}/{name} is not ready: {cond.reason}: {cond.message}",
            )
    return None


def channel_secret_names(body: Mapping[str, Any]) -> list[str]:
    return sorted({name for _, name, _ in secret_refs(body.get("spec"))})
