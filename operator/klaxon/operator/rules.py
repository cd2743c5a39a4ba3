"""AlertRule → PrometheusRule + status. Parse → compile (pure) → ensure (one I/O layer) → status."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec
from ..api.constants import HASH_ANNOTATION
from ..api.problems import INVALID_QUERY
from ..api.validation import parse_spec
from ..compile import compile_rule
from ..kube.apply import (
    Applied,
    NotOwnedError,
    Outcome,
    delete_owned,
    ensure_object,
    managed_digest,
    owner_reference,
    prepare,
)
from ..kube.client import Body, KubeError, Ref
from ..kube.events import post_event
from . import metrics
from .conditions import Cond, build_conditions, ready_from, status_changed, transitions
from .evaluation import Expectation, rule_evaluation
from .refs import Key, check_channels, resolve_config, rule_channels
from .runtime import Runtime

logger = logging.getLogger("klaxon.operator.rules")

KIND = "AlertRule"
OWN_CONDITIONS = ("Valid", "Synced", "Ready")
PROMRULE_API = "monitoring.coreos.com/v1"


@dataclass(frozen=True)
class RuleOutcome:
    conditions: list[Cond]
    retry: bool = False  # a transient failure: try again later


def _ref(body: Mapping[str, Any]) -> Ref:
    return Ref(PROMRULE_API, "prometheusrules", body["metadata"]["namespace"], body["metadata"]["name"])


def previous_status(rt: Runtime, body: Mapping[str, Any], kind: str = KIND) -> Mapping[str, Any]:
    """The status as the object shows it, with our own fields as this process last wrote them.

    Only the operator writes those fields, so its memory beats a possibly stale body; other
    writers' fields and conditions (the evaluator's) always come from the body.
    """
    meta = body["metadata"]
    status = dict(body.get("status") or {})
    written = rt.written.get((kind, meta["namespace"], meta["name"], meta.get("uid", "")))
    if written is None:
        return status
    cached = written[1]
    mine = list(cached.get("conditions") or [])
    types = {c.get("type") for c in mine}
    others = [c for c in status.get("conditions") or [] if c.get("type") not in types]
    return {**status, **cached, "conditions": mine + others}


def _synced_before(status: Mapping[str, Any], generation: int | None) -> bool:
    for c in status.get("conditions") or []:
        if c.get("type") == "Synced":
            return bool(c.get("status") == "True" and c.get("observedGeneration") == generation)
    return False


def kept_drift(status: Mapping[str, Any], generation: int | None) -> Cond | None:
    """A DriftCorrected note stays until the spec changes, so people can see it happened."""
    for c in status.get("conditions") or []:
        if (
            c.get("type") == "Synced"
            and c.get("reason") == "DriftCorrected"
            and c.get("observedGeneration") == generation
        ):
            return Cond("Synced", True, "DriftCorrected", str(c.get("message", "")))
    return None


async def reconcile_rule(rt: Runtime, body: Mapping[str, Any], trigger: str = "handler") -> RuleOutcome:
    meta = body["metadata"]
    ns, name = str(meta["namespace"]), str(meta["name"])
    async with rt.lock((KIND, ns, name)):
        with metrics.measure(KIND, trigger):
            return await _reconcile(rt, body)


async def _reconcile(rt: Runtime, body: Mapping[str, Any]) -> RuleOutcome:
    meta = body["metadata"]
    ns, name, uid, generation = str(meta["namespace"]), str(meta["name"]), meta.get("uid"), meta.get("generation")
    before = previous_status(rt, body)
    status_patch: dict[str, Any] = {}
    retry = False

    model, problems = parse_spec(KIND, body.get("spec"))
    if problems or not isinstance(model, AlertRuleSpec):
        text = "; ".join(map(str, problems))
        # A query Prometheus cannot parse says so in Ready: the rule cannot be in effect.
        reason = INVALID_QUERY if any(p.reason == INVALID_QUERY for p in problems) else "InvalidSpec"
        conds = [
            Cond("Valid", False, reason, text),
            Cond(
                "Synced",
                False,
                reason,
                "not applied: the spec is invalid; the last valid version (if any) stays in effect",
            ),
        ]
        return await _finish(rt, body, before, conds, status_patch, retry)

    spec = model
    ckey, config, ref_problem = resolve_config(ns, spec, rt.view("klaxon_configs"))
    if ref_problem is not None:
        conds = [
            Cond("Valid", True, "Valid", "the spec is valid"),
            ref_problem,
            Cond("Synced", False, ref_problem.reason, "not applied: " + ref_problem.message),
        ]
        return await _finish(rt, body, before, conds, status_patch, retry)

    result = compile_rule(name, ns, spec, config, uid)
    if result.problems:
        conds = [
            Cond("Valid", False, "CompileFailed", "; ".join(result.problems)),
            Cond("Synced", False, "CompileFailed", "not applied: the rule does not compile"),
        ]
        return await _finish(rt, body, before, conds, status_patch, retry)

    status_patch["engine"] = result.engine
    status_patch["engineReasons"] = list(result.evaluator_reasons)
    synced, pr_ref, retry = await _apply(rt, body, result.prometheus_rule, before, generation)
    status_patch["prometheusRuleRef"] = pr_ref
    conds = [Cond("Valid", True, "Valid", "the spec is valid"), synced]
    channels = check_channels(
        rule_channels(ns, spec, ckey, config), rt.view("klaxon_channels"), rt.view("klaxon_secret_keys")
    )
    if channels is not None:
        conds.append(channels)
    needs = config if result.engine == "evaluator" else None  # (None: no evaluator involved)
    evaluator = await _evaluator_condition(rt, body, spec, ckey, needs)
    if evaluator is not None:
        conds.append(evaluator)
    return await _finish(rt, body, before, conds, status_patch, retry)


async def _evaluator_condition(
    rt: Runtime, body: Mapping[str, Any], spec: AlertRuleSpec, ckey: Key, config: AlertConfigSpec | None
) -> Cond | None:
    """Whether the evaluator the rule needs is on and evaluates it (remembered for the sweep)."""
    meta = body["metadata"]
    key = (str(meta["namespace"]), str(meta["name"]))
    if config is None:
        rt.evaluations.pop(key, None)
        return None
    if not config.evaluator.enabled:
        rt.evaluations.pop(key, None)
        return Cond(
            "Evaluator",
            False,
            "EvaluatorDisabled",
            f"the rule needs the evaluator but AlertConfig {ckey[0]}/{ckey[1]} disables it",
        )
    if not spec.enabled:
        rt.evaluations.pop(key, None)
        return None
    expect = Expectation.of(ckey, config, spec)
    evaluated = await rule_evaluation(rt, body, expect)
    rt.evaluations[key] = (evaluated.ok, evaluated.reason, expect)
    return evaluated


async def _apply(
    rt: Runtime,
    owner: Mapping[str, Any],
    desired: Body | None,
    before: Mapping[str, Any],
    generation: int | None,
) -> tuple[Cond, dict[str, str] | None, bool]:
    """Ensure the PrometheusRule; returns (Synced condition, prometheusRuleRef, retry?)."""
    old_ref = before.get("prometheusRuleRef") or None
    uid = str(owner["metadata"].get("uid"))
    try:
        if desired is None:
            if old_ref:
                await delete_owned(rt.kube, _old(old_ref), uid)
            return (
                Cond(
                    "Synced",
                    True,
                    "NothingToApply",
                    "nothing for Prometheus to evaluate (evaluator-only "
                    "or disabled rule); no PrometheusRule is needed",
                ),
                None,
                False,
            )
        desired = {
            **desired,
            "metadata": {**desired["metadata"], "namespace": owner["metadata"]["namespace"]},
        }
        ref = _ref(desired)
        applied = await _ensure(rt, ref, prepare(desired, owner), owner, fresh=not old_ref)
        if old_ref and old_ref.get("name") != ref.name:  # renamed: drop the old one
            await delete_owned(rt.kube, _old(old_ref), uid)
    except KubeError as exc:
        return _apply_failed(exc), old_ref, exc.status >= 500 or exc.status in (409, 429)
    except NotOwnedError as exc:
        return Cond("Synced", False, "ApplyFailed", str(exc)), old_ref, False
    pr_ref = {"name": ref.name or "", "namespace": ref.namespace or ""}
    return _synced(applied, before, generation, old_ref, pr_ref), pr_ref, False


def _old(old_ref: Mapping[str, Any]) -> Ref:
    return Ref(PROMRULE_API, "prometheusrules", old_ref.get("namespace"), old_ref.get("name"))


async def _ensure(rt: Runtime, ref: Ref, prepared: Body, owner: Mapping[str, Any], fresh: bool) -> Applied:
    """Create or update the PrometheusRule. Never applied (``fresh``) and not seen by the watch:
    create without a GET (a 409 falls back to get-and-compare); as the watch shows it: nothing."""
    key = (ref.namespace or "", ref.name or "")
    if key in rt.promrule_digests and rt.promrule_digests[key] == managed_digest(prepared):
        return Applied(Outcome.UNCHANGED, prepared)  # no GET, no write
    live = None if fresh and key not in rt.promrules else await rt.kube.get(ref)
    rt.promrules.setdefault(key, "")  # our write in flight: the watch event that races it is ours
    try:
        applied = await ensure_object(rt.kube, prepared, owner, live=live)
    except BaseException:
        if rt.promrules.get(key) == "":
            del rt.promrules[key]
        raise
    rt.promrules[key] = str(applied.body.get("metadata", {}).get("resourceVersion") or "")
    rt.promrule_digests[key] = managed_digest(applied.body)
    return applied


def _apply_failed(exc: KubeError) -> Cond:
    if exc.resource_missing:
        return Cond(
            "Synced",
            False,
            "PrometheusRuleCRDMissing",
            "the PrometheusRule CRD (monitoring.coreos.com/v1) is not installed; install "
            "prometheus-operator's CRDs and the rule is applied at once",
        )
    return Cond("Synced", False, "ApplyFailed", f"applying PrometheusRule failed: {exc}")


def _synced(
    applied: Applied,
    before: Mapping[str, Any],
    generation: int | None,
    old_ref: Mapping[str, Any] | None,
    pr_ref: dict[str, str],
) -> Cond:
    """Synced=True, saying whether a hand edit or deletion was undone (now or before)."""
    where = f"PrometheusRule {pr_ref['namespace']}/{pr_ref['name']}"
    if applied.drift == "modified":
        return Cond("Synced", True, "DriftCorrected", f"{where} was modified by hand; restored")
    if (
        applied.outcome is Outcome.CREATED
        and _synced_before(before, generation)
        and old_ref
        and old_ref.get("name") == pr_ref["name"]
    ):
        return Cond("Synced", True, "DriftCorrected", f"{where} was deleted by hand; recreated")
    if not applied.wrote and (kept := kept_drift(before, generation)) is not None:
        return kept
    hash_ = applied.body.get("metadata", {}).get("annotations", {}).get(HASH_ANNOTATION, "")
    return Cond("Synced", True, "Applied", f"{where} is up to date (input hash {hash_})")


async def _finish(
    rt: Runtime,
    body: Mapping[str, Any],
    before: Mapping[str, Any],
    conds: Sequence[Cond],
    status_patch: dict[str, Any],
    retry: bool,
) -> RuleOutcome:
    own = [c for c in conds if c.type in ("Valid", "Synced")]
    ready = ready_from(conds, ok_message="the rule is in effect")
    await write_status(rt, KIND, body, before, [*own, ready], status_patch)
    return RuleOutcome([*own, ready], retry)


async def write_status(
    rt: Runtime,
    kind: str,
    body: Mapping[str, Any],
    before: Mapping[str, Any],
    conds: Sequence[Cond],
    extra: Mapping[str, Any],
    events: bool = True,
) -> None:
    """Write status only when it changes; post one Event per reconcile that changed a condition
    (unless ``events`` is False: someone else reports this change), except for a first status
    that is all True."""
    meta = body["metadata"]
    generation = meta.get("generation")
    previous = list(before.get("conditions") or [])
    mine = build_conditions(previous, conds, generation)
    owned = {c.type for c in conds}
    others = [c for c in previous if c.get("type") not in owned]  # e.g. the evaluator's own conditions
    wanted: dict[str, Any] = {"observedGeneration": generation, "conditions": mine + others, **extra}
    ready = next(c for c in conds if c.type == "Ready")
    metrics.record_ready(kind, meta["namespace"], meta["name"], ready.status, ready.reason)
    if not status_changed(before, wanted):
        return
    changed = transitions(previous, mine)
    try:
        patched = await rt.kube.patch_status(Ref.of(body), wanted)
    except KubeError as exc:
        if exc.status != 404:
            raise
        # deleted while we reconciled: its watch event (DELETED) follows, nothing is left to report on
        logger.debug("%s %s/%s is gone; its status is not written", kind, meta["namespace"], meta["name"])
        return
    version = str((patched.get("metadata") or {}).get("resourceVersion") or "")
    rt.remember_written(kind, meta, version, {**wanted, "conditions": mine})
    # A first status that is all good is no news: Events are for failures, recoveries and drift.
    if changed and events and (previous or any(c["status"] != "True" for c in changed)):
        first = next(
            (c for c in changed if c["type"] == "Synced" and c["reason"] == "DriftCorrected"), None
        ) or next((c for c in changed if c["type"] == "Ready"), changed[0])
        failing = any(c["status"] != "True" for c in changed)
        message = "; ".join(f"{c['type']}={c['status']} ({c['reason']}): {c['message']}" for c in changed)
        metrics.EVENTS.labels(kind, first["reason"]).inc()
        await post_event(rt.kube, body, "Warning" if failing else "Normal", first["reason"], message)


def owner_rule_key(pr: Mapping[str, Any]) -> Key | None:
    meta = pr.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("controller"):
            return (str(meta.get("namespace")), str(ref.get("name")))
    return None


__all__ = [
    "kept_drift",
    "owner_reference",
    "owner_rule_key",
    "previous_status",
    "reconcile_rule",
    "write_status",
]
