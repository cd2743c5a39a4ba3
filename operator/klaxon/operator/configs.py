"""AlertConfig → evaluator ServiceAccount, Role, RoleBinding, metrics Service, one Deployment per shard."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..api.alertconfig import AlertConfigSpec
from ..api.constants import CONFIG_LABEL, SHARD_LABEL
from ..api.refs import namespace_allowed
from ..api.sharding import shard_of
from ..api.validation import parse_spec
from ..kube.apply import NotOwnedError, controller_uid, delete_owned, ensure_object
from ..kube.client import Body, KubeError, Ref
from . import metrics
from .build import (
    build_config_children,
    build_events_service,
    build_metrics_service,
    build_role,
    build_role_binding,
    build_service_account,
    secret_refs,
    short_name,
)
from .conditions import Cond, ready_from
from .grants import apply_grants, build_grants, delete_grants, grant_namespaces
from .refs import Key
from .rules import kept_drift, previous_status, write_status
from .runtime import Runtime

logger = logging.getLogger("klaxon.operator.configs")

KIND = "AlertConfig"


def config_secret_names(rt: Runtime, namespace: str, spec: Mapping[str, Any] | None) -> list[str]:
    """Secrets the evaluator may read: the config's own and those of channels in its namespace."""
    names = {name for _, name, _ in secret_refs(spec)}
    for (ns, _), body in rt.view("klaxon_channels").items():
        if ns == namespace:
            names.update(name for _, name, _ in secret_refs(body.get("spec")))
    return sorted(names)


def channel_secrets_by_namespace(rt: Runtime, namespaces: list[str]) -> dict[str, list[str]]:
    """Secret names the channels of each namespace reference (what its Role lets the evaluator read)."""
    wanted = set(namespaces)
    out: dict[str, set[str]] = {}
    for (ns, _), body in rt.view("klaxon_channels").items():
        if ns in wanted:
            out.setdefault(ns, set()).update(name for _, name, _ in secret_refs(body.get("spec")))
    return {ns: sorted(names) for ns, names in out.items()}


def wanted_grants(rt: Runtime, key: Key, spec: AlertConfigSpec) -> list[str]:
    """Namespaces besides the config's own where its evaluator needs a Role."""
    return grant_namespaces(key[0], spec, {k[0] for k in assigned_rules(rt, key, spec)})


def rule_uid(rt: Runtime, key: Key) -> str:
    """The rule's uid, which the evaluators shard by (falls back to ns/name before the index has it)."""
    bodies = rt.many("klaxon_rules", key)
    meta = (bodies[0].get("metadata") or {}) if bodies else {}
    return str(meta.get("uid") or "/".join(key))


def assigned_rules(rt: Runtime, key: Key, spec: AlertConfigSpec) -> list[Key]:
    return sorted(
        k
        for k in rt.many("klaxon_rules_by_config", key)
        if namespace_allowed(k[0], config_namespace=key[0], allowed=spec.allowed_namespaces)
    )


async def reconcile_config(
    rt: Runtime, body: Mapping[str, Any], trigger: str = "handler", counts_only: bool = False
) -> list[Cond]:
    """``counts_only``: rules came or went; recount without touching the evaluator's objects."""
    meta = body["metadata"]
    async with rt.lock((KIND, meta["namespace"], meta["name"])):
        with metrics.measure(KIND, trigger):
            return await _reconcile(rt, body, counts_only)


async def _reconcile(rt: Runtime, body: Mapping[str, Any], counts_only: bool = False) -> list[Cond]:
    meta = body["metadata"]
    ns, name, generation = str(meta["namespace"]), str(meta["name"]), meta.get("generation")
    before = previous_status(rt, body, KIND)
    model, problems = parse_spec(KIND, body.get("spec"))
    if problems or not isinstance(model, AlertConfigSpec):
        conds = [
            Cond("Valid", False, "InvalidSpec", "; ".join(map(str, problems))),
            Cond("Synced", False, "InvalidSpec", "evaluator not updated: the spec is invalid"),
        ]
        await write_status(rt, KIND, body, before, [*conds, ready_from(conds)], {})
        return conds
    spec = model
    key = (ns, name, str(meta.get("uid")))
    grants_wanted = wanted_grants(rt, (ns, name), spec)
    known_grants = rt.config_grants.get(key)
    if counts_only and key in rt.config_children and known_grants and known_grants[0] == grants_wanted:
        return await _status(rt, body, before, spec, *rt.config_children[key])
    children = build_config_children(
        name,
        ns,
        spec,
        rt.options.image,
        config_secret_names(rt, ns, body.get("spec")),
        rt.options.image_pull_policy,
        rt.options.image_pull_secrets,
    )
    deployments: dict[int, Body] = {}
    drift: list[str] = []
    synced: Cond
    try:
        for child in children:
            applied = await ensure_object(rt.kube, child, body)
            if applied.drift:
                drift.append(f"{child['kind']} {child['metadata']['name']}")
            if child["kind"] == "Deployment":
                shard = int(child["metadata"]["labels"][SHARD_LABEL])
                deployments[shard] = applied.body
        await _delete_stale(
            rt, body, spec, {c["metadata"]["name"] for c in children if c["kind"] == "Deployment"}
        )
        missing = await _sync_grants(rt, body, before, grants_wanted, drift)
        if drift:
            synced = Cond("Synced", True, "DriftCorrected", ", ".join(drift) + " modified by hand; restored")
        elif (kept := kept_drift(before, generation)) is not None:
            synced = kept
        else:
            synced = Cond("Synced", True, "Applied", f"{len(children)} evaluator object(s) up to date")
        if missing:
            synced = Cond(
                synced.type,
                synced.ok,
                synced.reason,
                f"{synced.message}; namespace(s) {', '.join(missing)} do not exist: the evaluator gets "
                "access there when they are created",
            )
    except (KubeError, NotOwnedError) as exc:
        synced = Cond("Synced", False, "ApplyFailed", f"applying the evaluator failed: {exc}")
    rt.config_children[key] = (deployments, synced)
    return await _status(rt, body, before, spec, deployments, synced)


async def _status(
    rt: Runtime,
    body: Mapping[str, Any],
    before: Mapping[str, Any],
    spec: AlertConfigSpec,
    deployments: dict[int, Body],
    synced: Cond,
) -> list[Cond]:
    ns, name = str(body["metadata"]["namespace"]), str(body["metadata"]["name"])
    rules = assigned_rules(rt, (ns, name), spec)
    shards = spec.evaluator.shards
    per_shard = [0] * shards
    for rule_key in rules:
        per_shard[shard_of(rule_uid(rt, rule_key), shards)] += 1
    shard_status = []
    for i in range(shards if spec.evaluator.enabled else 0):
        dep = deployments.get(i) or {}
        shard_status.append(
            {
                "index": i,
                "deployment": (dep.get("metadata") or {}).get("name", ""),
                "readyReplicas": int((dep.get("status") or {}).get("readyReplicas") or 0),
                "rules": per_shard[i],
            }
        )
    uid = str(body["metadata"].get("uid"))
    grants = rt.config_grants.get((ns, name, uid))
    granted = grants[1] if grants else list(before.get("grantedNamespaces") or [])
    extra: dict[str, Any] = {"rulesAssigned": len(rules), "shards": shard_status, "grantedNamespaces": granted}
    conds = [Cond("Valid", True, "Valid", "the spec is valid"), synced]
    if spec.evaluator.enabled:
        not_ready = [s for s in shard_status if s["readyReplicas"] < 1]
        extra["evaluatorReady"] = not not_ready and synced.ok is True
        if not_ready:
            conds.append(
                Cond(
                    "Evaluator",
                    False,
                    "EvaluatorNotReady",
                    "no ready evaluator pod in shard(s) " + ", ".join(str(s["index"]) for s in not_ready),
                )
            )
    else:
        extra["evaluatorReady"] = None
    await write_status(
        rt,
        KIND,
        body,
        before,
        [conds[0], synced, ready_from(conds, ok_message=(f"{len(rules)} rule(s) across {shards} shard(s)"))],
        extra,
    )
    return conds


async def _sync_grants(
    rt: Runtime,
    body: Mapping[str, Any],
    before: Mapping[str, Any],
    wanted: list[str],
    drift: list[str],
) -> list[str]:
    """Create the evaluator's Roles in other namespaces, delete the ones no longer wanted; returns
    the wanted namespaces that do not exist."""
    meta = body["metadata"]
    ns, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
    grants = build_grants(ns, name, uid, wanted, channel_secrets_by_namespace(rt, wanted))
    result = await apply_grants(rt.kube, grants)
    drift.extend(result.drift)
    previous = _previous_grants(rt, (ns, name, uid), before)
    await delete_grants(rt.kube, ns, name, uid, sorted(previous - set(wanted) - {ns}))
    granted = [n for n in wanted if n not in result.missing_namespaces]
    rt.config_grants[(ns, name, uid)] = (wanted, granted)
    return result.missing_namespaces


def _previous_grants(rt: Runtime, key: tuple[str, str, str], status: Mapping[str, Any]) -> set[str]:
    """Where grants may exist: what status says and what this process last wanted."""
    known = rt.config_grants.get(key)
    return set(status.get("grantedNamespaces") or []) | set(known[0] if known else [])


async def forget_config(rt: Runtime, body: Mapping[str, Any]) -> list[str]:
    """The AlertConfig is gone: delete the grants no owner reference collects."""
    meta = body.get("metadata") or {}
    key = (str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid")))
    async with rt.lock((KIND, key[0], key[1])):  # after a reconcile in flight, which may still create some
        previous = _previous_grants(rt, key, body.get("status") or {})
        rt.config_grants.pop(key, None)
        return await delete_grants(rt.kube, *key, sorted(previous - {key[0]}))


async def _delete_stale(rt: Runtime, owner: Mapping[str, Any], spec: AlertConfigSpec, keep: set[str]) -> None:
    """Shards removed or the evaluator disabled: delete what we own and no longer want."""
    meta = owner["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], str(meta["uid"])
    selector = f"{CONFIG_LABEL}={short_name(name)}"
    for dep in await rt.kube.list(Ref("apps/v1", "deployments", ns), label_selector=selector):
        if dep["metadata"]["name"] not in keep and controller_uid(dep) == uid:
            await delete_owned(
                rt.kube, Ref.of({**dep, "apiVersion": "apps/v1", "kind": "Deployment"}), uid, live=dep
            )
    if not spec.evaluator.enabled or spec.events.token is None:
        await delete_owned(rt.kube, Ref.of(build_events_service(name, ns)), uid)
    if not spec.evaluator.enabled:
        for obj in (
            build_service_account(name, ns),
            build_role(name, ns, ()),
            build_role_binding(name, ns),
            build_metrics_service(name, ns),
        ):
            await delete_owned(rt.kube, Ref.of(obj), uid)
