"""Kicks and loops: reconcile an object soon (coalesced, retried), who depends on whom, and the
slow safety nets (a resync of everything, a check that evaluator-run rules are evaluated)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ..kube.client import KubeError
from .channels import reconcile_channel
from .configs import reconcile_config
from .evaluation import last_evaluation, rule_evaluation
from .grants import collect_orphans
from .refs import Key
from .rules import reconcile_rule
from .runtime import Runtime

logger = logging.getLogger("klaxon.operator")


# ----------------------------------------------------------------------------- kicks
def kick_rule(rt: Runtime, key: Key, trigger: str, delay: float | None = None) -> None:
    """Reconcile the rule soon with its latest body; a failure is retried after ``retry_seconds``
    (one the API server's absence explains, by ``Runtime.kick`` sooner)."""

    async def run() -> None:
        body = rt.view("klaxon_rules").get(key)
        if body is None:
            return
        try:
            outcome = await reconcile_rule(rt, body, trigger)
        except KubeError as exc:
            if not exc.transient:
                again()
            raise
        except Exception:
            again()
            raise
        if outcome.retry:
            again()

    def again() -> None:
        rt.kick(("AlertRule", *key), run, delay=rt.options.retry_seconds, gate=rt.promrules_listed)

    # What a rule compares with (no GET each) comes with the PrometheusRules' listing: at startup
    # every rule kick, whatever its trigger, waits for it (without holding a reconcile slot).
    rt.kick(("AlertRule", *key), run, delay=delay, gate=rt.promrules_listed)


def kick_config(rt: Runtime, key: Key, trigger: str) -> None:
    async def run() -> None:
        body = rt.view("klaxon_configs").get(key)
        if body is not None:
            await reconcile_config(rt, body, trigger)

    rt.kick(("AlertConfig", *key), run)


def kick_config_counts(rt: Runtime, key: Key) -> None:
    """Rules came or went: recount soon, batched (a burst of new rules is one status write)."""

    async def run() -> None:
        body = rt.view("klaxon_configs").get(key)
        if body is not None:
            await reconcile_config(rt, body, "rule", counts_only=True)

    rt.kick(("AlertConfig-counts", *key), run, delay=max(rt.options.debounce_seconds, 1.0))


def kick_channel(rt: Runtime, key: Key, trigger: str) -> None:
    async def run() -> None:
        body = rt.view("klaxon_channels").get(key)
        if body is not None:
            await reconcile_channel(rt, body, trigger)

    rt.kick(("NotificationChannel", *key), run)


def rules_of_channel(rt: Runtime, key: Key) -> set[Key]:
    """Rules naming the channel, and rules falling back to it through their config's defaults."""
    found = set(rt.many("klaxon_rules_by_channel", key))
    for ckey, config in rt.view("klaxon_configs").items():
        if ckey[0] == key[0] and key[1] in (
            ((config.get("spec") or {}).get("defaults") or {}).get("channels") or []
        ):
            found.update(rt.many("klaxon_rules_by_config", ckey))
    return found


def delivery_flipped(status: Mapping[str, Any] | None) -> bool:
    """The evaluator's ``status.queue`` says deliveries fail (or work again) and Ready does not say so yet."""
    failing = bool(((status or {}).get("queue") or {}).get("failingSince"))
    ready = next((c for c in (status or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    return ready is not None and failing != (ready.get("reason") == "DeliveryFailing")


def spec_changed(rt: Runtime, kind: str, key: Key, type_: str | None, meta: Mapping[str, Any]) -> bool:
    """Whether dependents must look again: the object appeared, went, or its spec changed."""
    seen = (kind, *key)
    now = (meta.get("uid"), meta.get("generation"))
    if type_ == "DELETED":
        rt.generations.pop(seen, None)
        return True
    if rt.generations.get(seen) == now:
        return False
    rt.generations[seen] = now
    return True


async def resync_loop(rt: Runtime) -> None:
    while True:
        await asyncio.sleep(rt.options.resync_seconds)
        for key in rt.keys("klaxon_configs"):
            kick_config(rt, key, "resync")
        for key in rt.keys("klaxon_channels"):
            kick_channel(rt, key, "resync")
        for key in rt.keys("klaxon_rules"):
            kick_rule(rt, key, "resync")
        # Grants in other namespaces of AlertConfigs deleted while no operator was running.
        live = {str((b.get("metadata") or {}).get("uid")) for b in rt.view("klaxon_configs").values()}
        try:
            await collect_orphans(rt.kube, live, rt.options.namespaces)
        except Exception:
            logger.exception("Collecting orphaned evaluator grants failed.")


def awaits_evaluation(rt: Runtime, key: Key, status: Mapping[str, Any] | None) -> bool:
    """A rule held back from Ready for want of an evaluation that now shows one."""
    verdict = rt.evaluations.get(key)
    return verdict is not None and verdict[0] is False and last_evaluation(status) is not None and (
        verdict[1] in ("AwaitingEvaluation", "EvaluatorNotReady", "EvaluationStale")
    )


async def evaluation_loop(rt: Runtime) -> None:
    """Re-check evaluator-run rules: a lastEvaluation going stale or a shard losing its leader
    changes no object, so time has to be watched; only rules whose verdict changed are reconciled."""
    while True:
        await asyncio.sleep(rt.options.evaluation_check_seconds)
        try:
            for key in await changed_evaluations(rt):
                kick_rule(rt, key, "evaluation")
        except Exception:
            logger.exception("Checking the evaluation of evaluator-run rules failed.")


async def changed_evaluations(rt: Runtime) -> list[Key]:
    rules = rt.view("klaxon_rules")
    changed = []
    for key, (ok, reason, expect) in list(rt.evaluations.items()):
        body = rules.get(key)
        if body is not None:
            cond = await rule_evaluation(rt, body, expect)
            if (cond.ok, cond.reason) != (ok, reason):
                changed.append(key)
    return changed


def configs_granting(rt: Runtime, namespace: str) -> list[Key]:
    """AlertConfigs whose evaluator holds (or should hold) a Role in ``namespace``."""
    return [
        (k[0], k[1])
        for k, (wanted, _) in list(rt.config_grants.items())
        if namespace in wanted and (k[0], k[1]) in rt.view("klaxon_configs")
    ]


# ------------------------------------------------------------------------ registry
