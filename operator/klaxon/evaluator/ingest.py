"""The evaluator's event ingestion: the AlertConfig's ``klaxon.events.EventService`` wired to Kubernetes.

The token comes from the AlertConfig's Secret, the event rules from listing AlertRules (and their
``klaxon.dev/entries`` annotations), and entries go to AlertRule status. The service itself
(``POST /v1/events``, matching, grouping, entries, state) is ``klaxon.events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.refs import config_key, granted_namespaces, rules_scope
from klaxon.engine.types import iso
from klaxon.evaluator.connect import KubeSecretResolver
from klaxon.events import state
from klaxon.events.service import EventNotifier, EventService, sync_rules, tune_gc
from klaxon.kube.client import FAILURES, KubeClient, Ref
from klaxon.notify.model import SecretError, SecretResolver

log = logging.getLogger("klaxon.evaluator.events")


def _state_path(state_dir: str | Path | None) -> Path | None:
    if state_dir is None:
        return None
    with contextlib.suppress(OSError):  # an unwritable state dir: each save says so, nothing crashes
        Path(state_dir).mkdir(parents=True, exist_ok=True)
    return Path(state_dir) / state.STATE_FILE


async def event_service_for(
    kube: KubeClient,
    config_namespace: str,
    config_name: str,
    config: AlertConfigSpec,
    registry: CollectorRegistry,
    *,
    notifier: EventNotifier | None = None,
    refresh_s: float = 10.0,
    state_dir: str | Path | None = None,
    secrets: SecretResolver | None = None,
) -> EventService | None:
    """The AlertConfig's event service for ``klaxon evaluator``, or None without ``spec.events.token``.

    The token is read from the Secret (in the AlertConfig's namespace) and re-read every minute;
    rules and their ``klaxon.dev/entries`` annotations are re-listed every ``refresh_s``, when
    entries quiet for a full window (wall clock) are closed too; entries go to AlertRule status.
    With ``state_dir``, grouping, cooldown and entries are kept there across restarts. The token's
    Secret and the namespaces listed follow ``EventService.set_config``.
    """
    if config.events.token is None:
        log.info("AlertConfig %s/%s has no spec.events.token: POST /v1/events is off", config_namespace, config_name)
        return None
    reader = secrets or KubeSecretResolver(kube)

    async def token() -> str:
        selector = service.config.events.token
        if selector is None:
            raise SecretError(f"AlertConfig {config_namespace}/{config_name} has no spec.events.token")
        return (await reader.get(config_namespace, selector.name, selector.key)).strip()

    async def write(namespace: str, name: str, status: dict[str, Any]) -> None:
        await kube.patch_status(Ref.klaxon("AlertRule", namespace, name), status)

    service = EventService(
        config, token, notifier=notifier, write_status=write, registry=registry, state_path=_state_path(state_dir)
    )
    lister = RuleLister(kube, service, config_namespace, config_name)

    async def refresh() -> None:
        while True:
            await lister.refresh()
            service.sweep(datetime.now(UTC))
            await asyncio.sleep(refresh_s)

    service.background.append(refresh)
    tune_gc()
    return service


class RuleLister:
    """Lists the AlertConfig's event rules into its service, namespace by namespace; a namespace
    that cannot be listed keeps the rules last listed there (an error is not a deletion)."""

    def __init__(self, kube: KubeClient, service: EventService, config_namespace: str, config_name: str) -> None:
        self.kube, self.service = kube, service
        self.config_namespace, self.config_name = config_namespace, config_name
        self.last: dict[str, list[dict[str, Any]]] = {}  # per namespace: the rules last listed there

    def ours(self, rule: Mapping[str, Any]) -> bool:
        meta = rule.get("metadata") or {}
        return config_key(str(meta.get("namespace", "")), rule.get("spec")) == (self.config_namespace, self.config_name)

    async def granted(self) -> list[str]:
        """With allowedNamespaces '*': the namespaces the operator granted (those holding our rules)."""
        if "*" not in self.service.config.allowed_namespaces:
            return []
        cfg_obj: Mapping[str, Any] | None = None
        try:
            cfg_obj = await self.kube.get(Ref.klaxon("AlertConfig", self.config_namespace, self.config_name))
        except FAILURES as exc:
            log.warning(
                "reading AlertConfig %s/%s failed: %s", self.config_namespace, self.config_name, exc, exc_info=True
            )
        if cfg_obj is not None:
            return granted_namespaces(cfg_obj)
        return [ns for ns in self.last if ns != self.config_namespace]  # unreadable or gone: as they were

    async def refresh(self) -> None:
        last = self.last
        scope = rules_scope(self.config_namespace, self.service.config.allowed_namespaces, await self.granted())
        for gone in set(last) - set(scope):
            del last[gone]
        complete = True
        for ns in scope:
            try:
                last[ns] = [r for r in await self.kube.list(Ref.klaxon("AlertRule", ns)) if self.ours(r)]
            except FAILURES as exc:  # keep what was there: an error is not a deletion
                complete = False
                log.warning("listing event rules in %s failed: %s", ns, exc, exc_info=True)
        if complete or last:
            sync_rules(self.service, [r for items in last.values() for r in items], complete=complete)


def event_rule_statuses(events: EventService | None, now: float) -> list[tuple[str, str, dict[str, Any]]]:
    """State of the event rules shard 0 ingests for: Firing while an alert entry is open, else
    Inactive, with a lastEvaluation (written on change and as a heartbeat, within the budget;
    the entries themselves are the event service's to write)."""
    if events is None:
        return []
    out = []
    for ns, name in sorted(events.rules):
        try:
            open_ = int(events.entries_status(ns, name).get("entriesCount") or 0)
        except KeyError:  # removed meanwhile
            continue
        spec = events.rules[(ns, name)].spec
        firing = open_ > 0 and spec.enabled
        message = f"{open_} open alert entr{'y' if open_ == 1 else 'ies'}" if open_ else "no open alert entries"
        out.append((ns, name, {
            "engine": "evaluator",
            "state": ("Firing" if firing else "Inactive") if spec.enabled else "Disabled",
            "level": spec.severity if firing else None,
            "reason": "OpenEntries" if firing else (None if spec.enabled else "Disabled"),
            "lastEvaluation": {"time": iso(now), "value": None, "message": message},
        }))
    return out
