"""kopf wiring, kept thin: every handler hands the body to one reconcile function.

Triggers:
  * create/update/resume of each kind → its reconcile;
  * indices keep who references whom, so when an AlertConfig, NotificationChannel or Secret
    appears, changes or goes, the dependent objects are reconciled at once (no resync wait);
  * watches on our children undo hand edits and deletions (PrometheusRules through the
    operator's own watch, see promrules.py; evaluator objects through kopf's);
  * a CRD watch re-applies every rule when the PrometheusRule CRD gets installed;
  * a slow resync loop is the safety net.
No finalizers: owner references garbage-collect children, and deletions reach dependents
through the watch events (``on.event``) instead of delete handlers.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import kopf

from ..api.constants import (
    ALERT_CONFIGS,
    ALERT_RULES,
    GROUP,
    MANAGED_BY,
    NOTIFICATION_CHANNELS,
    OWNER_UID_LABEL,
    PLURALS,
    VERSION,
)
from ..api.refs import config_key
from ..kube.client import KubeClient, KubeError
from ..kube.login import connection_info
from . import metrics
from .channels import reconcile_channel
from .configs import forget_config, reconcile_config
from .kicks import (
    awaits_evaluation,
    configs_granting,
    delivery_flipped,
    evaluation_loop,
    kick_channel,
    kick_config,
    kick_config_counts,
    kick_rule,
    resync_loop,
    rules_of_channel,
    spec_changed,
)
from .kopf_fixes import drop_managed_fields, wake_toggle_waiters_on_flip
from .promrules import crd_installed, follow_promrules
from .refs import Key, raw_rule_channels
from .runtime import Options, Runtime
from .webhook import validator

logger = logging.getLogger("klaxon.operator")

PROMRULE_CRD = "prometheusrules.monitoring.coreos.com"

CHILD_KINDS = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "serviceaccounts"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
)


def rule_trigger(type_: str | None, status: Mapping[str, Any] | None) -> str:
    """What a rule's watch event means, as kopf would name it: the initial listing (None) resumes
    a rule reconciled before, and creates one never reconciled."""
    if type_ is None:
        return "resume" if (status or {}).get("observedGeneration") is not None else "create"
    return "create" if type_ == "ADDED" else "update"


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _slim(body: kopf.Body) -> dict[str, Any]:
    """What reconciling a rule reads, sharing the event's parsed spec and status (never mutated):
    no managedFields, annotations or a deep copy per event."""
    meta = body.metadata
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "generation": meta.get("generation"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }


def _key(meta: Mapping[str, Any]) -> Key:
    return (str(meta.get("namespace")), str(meta.get("name")))


def rt_of(memo: Any, kwargs: Mapping[str, Any]) -> Runtime:
    rt: Runtime = memo.klaxon
    rt.capture(kwargs)
    return rt


@contextlib.contextmanager
def api_failures_retried(rt: Runtime, retry: int) -> Iterator[None]:
    """A reconcile cut off by the API server is retried soon (Runtime.api_retry_delay), without
    a traceback; kopf's default for other errors (60 s) would hold back edits made meanwhile."""
    try:
        yield
    except KubeError as exc:
        if not exc.transient:
            raise
        raise kopf.TemporaryError(str(exc), delay=rt.api_retry_delay(exc, retry)) from None


def make_registry(
    options: Options | None = None, *, login: bool = False, webhook: bool = False
) -> kopf.OperatorRegistry:
    """All of Klaxon's handlers in a fresh registry (one per operator run or test).

    ``webhook``: register the validating handlers (needs ``settings.admission.server``).
    """
    opts = options or Options()
    wake_toggle_waiters_on_flip()  # startup with thousands of rules (see kopf_fixes)
    drop_managed_fields()
    registry = kopf.OperatorRegistry()
    _lifecycle(registry, opts, login)
    _indices(registry)
    _reconcilers(registry, opts)
    _reference_events(registry, opts)
    _config_and_channel_events(registry, opts)
    _namespace_and_secret_events(registry, opts)
    _drift(registry, opts)
    _admission(registry, opts, webhook)
    return registry


def _lifecycle(registry: kopf.OperatorRegistry, opts: Options, login: bool) -> None:
    """Login, startup (the Runtime and its loops) and cleanup."""
    on = kopf.on

    if login:

        @on.login(registry=registry)
        async def klaxon_login(**_: Any) -> kopf.ConnectionInfo:
            kube = await KubeClient.connect(opts.kube_configuration, opts.kubeconfig, opts.context)
            try:
                return connection_info(kube.api.configuration)
            finally:
                await kube.close()

    @on.startup(registry=registry)
    async def klaxon_startup(memo: kopf.Memo, **_: Any) -> None:
        kube = await KubeClient.connect(opts.kube_configuration, opts.kubeconfig, opts.context)
        rt = Runtime(opts, kube)
        memo.klaxon = rt
        rt.spawn(resync_loop(rt), "klaxon-resync")
        rt.spawn(evaluation_loop(rt), "klaxon-evaluation-check")
        rt.spawn(follow_promrules(rt), "klaxon-promrules")  # drift of PrometheusRules (see promrules)

    @on.cleanup(registry=registry)
    async def klaxon_cleanup(memo: kopf.Memo, **_: Any) -> None:
        rt: Runtime | None = getattr(memo, "klaxon", None)
        if rt is not None:
            await rt.close()


def _indices(registry: kopf.OperatorRegistry) -> None:
    """Indices: who references whom (values are plain data; Secrets keep key names only)."""

    @kopf.index(GROUP, VERSION, ALERT_RULES, id="klaxon_rules", registry=registry)
    async def klaxon_rules(body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[Key, Any]:
        return {_key(meta): _slim(body)}

    @kopf.index(GROUP, VERSION, ALERT_RULES, id="klaxon_rules_by_config", registry=registry)
    async def klaxon_rules_by_config(spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> dict[Key, Key]:
        return {config_key(str(meta["namespace"]), dict(spec)): _key(meta)}

    @kopf.index(GROUP, VERSION, ALERT_RULES, id="klaxon_rules_by_channel", registry=registry)
    async def klaxon_rules_by_channel(spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> dict[Key, Key]:
        return {ch: _key(meta) for ch in raw_rule_channels(str(meta["namespace"]), dict(spec))}

    @kopf.index(GROUP, VERSION, ALERT_CONFIGS, id="klaxon_configs", registry=registry)
    async def klaxon_configs(body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[Key, Any]:
        return {_key(meta): _plain(body)}

    @kopf.index(GROUP, VERSION, NOTIFICATION_CHANNELS, id="klaxon_channels", registry=registry)
    async def klaxon_channels(body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[Key, Any]:
        return {_key(meta): _plain(body)}

    @kopf.index(GROUP, VERSION, NOTIFICATION_CHANNELS, id="klaxon_channels_by_secret", registry=registry)
    async def klaxon_channels_by_secret(body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[Key, Key]:
        from .refs import channel_secret_names

        return {(str(meta["namespace"]), s): _key(meta) for s in channel_secret_names(body)}

    @kopf.index("", "v1", "secrets", id="klaxon_secret_keys", registry=registry)
    async def klaxon_secret_keys(body: kopf.Body, meta: kopf.Meta, **_: Any) -> dict[Key, frozenset[str]]:
        return {
            _key(meta): frozenset((body.get("data") or {}).keys())
            | frozenset((body.get("stringData") or {}).keys())
        }


def _reconcilers(registry: kopf.OperatorRegistry, opts: Options) -> None:
    """Configs and channels: create/update/resume converge on one reconcile. Rules (the many) are
    driven by their watch events and their generation instead (``rule_event``): kopf's bookkeeping
    would cost a PATCH of every rule and a wait for it to come back."""
    on = kopf.on

    @on.resume(GROUP, VERSION, ALERT_CONFIGS, id="reconcile", registry=registry)
    @on.create(GROUP, VERSION, ALERT_CONFIGS, id="reconcile", registry=registry)
    @on.update(GROUP, VERSION, ALERT_CONFIGS, id="reconcile", registry=registry)
    async def config_changed(body: kopf.Body, memo: kopf.Memo, reason: str, retry: int, **kwargs: Any) -> None:
        rt = rt_of(memo, kwargs)
        with api_failures_retried(rt, retry):
            await reconcile_config(rt, _plain(body), str(reason))

    @on.resume(GROUP, VERSION, NOTIFICATION_CHANNELS, id="reconcile", registry=registry)
    @on.create(GROUP, VERSION, NOTIFICATION_CHANNELS, id="reconcile", registry=registry)
    @on.update(GROUP, VERSION, NOTIFICATION_CHANNELS, id="reconcile", registry=registry)
    async def channel_changed(body: kopf.Body, memo: kopf.Memo, reason: str, retry: int, **kwargs: Any) -> None:
        rt = rt_of(memo, kwargs)
        with api_failures_retried(rt, retry):
            await reconcile_channel(rt, _plain(body), str(reason))


def _reference_events(registry: kopf.OperatorRegistry, opts: Options) -> None:
    """References, both ways: dependents follow their referents' events at once."""
    on = kopf.on

    @on.event(GROUP, VERSION, ALERT_RULES, registry=registry)
    async def rule_event(
        type: str | None, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, memo: kopf.Memo, **kwargs: Any
    ) -> None:
        rt = rt_of(memo, kwargs)
        key = _key(meta)
        ckey = config_key(key[0], dict(spec))
        old = rt.rule_config.get(key)
        if spec_changed(rt, "AlertRule", key, type, meta):
            if type != "DELETED":  # new here, or a new generation: our status writes keep it
                trigger = rule_trigger(type, status)
                kick_rule(rt, key, trigger, delay=None if trigger == "resume" else 0)
        elif awaits_evaluation(rt, key, status):
            kick_rule(rt, key, "evaluation")  # the evaluator reported: the rule may be in effect now
        rt.forget_written("AlertRule", key, meta, deleted=type == "DELETED")
        if type == "DELETED":
            rt.rule_config.pop(key, None)
            rt.evaluations.pop(key, None)
            metrics.record_ready("AlertRule", *key, None)
        else:
            rt.rule_config[key] = ckey
        if old != ckey or type in ("DELETED", None, "ADDED"):
            for k in {ckey, old} - {None}:
                kick_config_counts(rt, k)  # type: ignore[arg-type]


def _config_and_channel_events(registry: kopf.OperatorRegistry, opts: Options) -> None:
    """The rules of a config or channel that came, changed or went are reconciled at once."""
    on = kopf.on

    @on.event(GROUP, VERSION, ALERT_CONFIGS, registry=registry)
    async def config_event(
        type: str | None, body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, **kwargs: Any
    ) -> None:
        rt = rt_of(memo, kwargs)
        key = _key(meta)
        rt.forget_written("AlertConfig", key, meta, deleted=type == "DELETED")
        if not spec_changed(rt, "AlertConfig", key, type, meta):
            return  # our own status writes: nothing rules depend on
        if type == "DELETED":
            metrics.record_ready("AlertConfig", *key, None)
            rt.config_children = {k: v for k, v in rt.config_children.items() if k[:2] != key}
            final = _plain(body)

            async def forget() -> None:
                await forget_config(rt, final)

            rt.spawn(forget(), name=f"klaxon-forget-{key[0]}/{key[1]}")
        for rule in rt.many("klaxon_rules_by_config", key):
            kick_rule(rt, rule, "config")

    @on.event(GROUP, VERSION, NOTIFICATION_CHANNELS, registry=registry)
    async def channel_event(
        type: str | None, meta: kopf.Meta, status: kopf.Status, memo: kopf.Memo, **kwargs: Any
    ) -> None:
        rt = rt_of(memo, kwargs)
        key = _key(meta)
        rt.forget_written("NotificationChannel", key, meta, deleted=type == "DELETED")
        if type != "DELETED" and delivery_flipped(status):
            kick_channel(rt, key, "delivery")
        if not spec_changed(rt, "NotificationChannel", key, type, meta):
            return
        if type == "DELETED":
            metrics.record_ready("NotificationChannel", *key, None)
        for rule in rules_of_channel(rt, key):
            kick_rule(rt, rule, "channel")
        for ckey in rt.keys("klaxon_configs"):  # the evaluator Role lists channel Secrets
            if ckey[0] == key[0]:
                kick_config(rt, ckey, "channel")
        for ckey in configs_granting(rt, key[0]):  # ... and so do its Roles in other namespaces
            kick_config(rt, ckey, "channel")


def _namespace_and_secret_events(registry: kopf.OperatorRegistry, opts: Options) -> None:
    """A namespace that comes or goes changes which configs grant it; a Secret's keys, the channels
    that read it."""
    on = kopf.on

    @on.event("", "v1", "namespaces", registry=registry)
    async def namespace_event(type: str | None, meta: kopf.Meta, memo: kopf.Memo, **kwargs: Any) -> None:
        """A namespace an AlertConfig lists appeared: give its evaluator access there now."""
        rt = rt_of(memo, kwargs)
        if type != "ADDED":  # the initial listing (None) is covered by the configs' own resume
            return
        for ckey, config in rt.view("klaxon_configs").items():
            if meta.get("name") in (((config.get("spec") or {}).get("allowedNamespaces")) or []):
                kick_config(rt, ckey, "namespace")

    @on.event("", "v1", "secrets", registry=registry)
    async def secret_event(meta: kopf.Meta, memo: kopf.Memo, **kwargs: Any) -> None:
        rt = rt_of(memo, kwargs)
        for channel in rt.many("klaxon_channels_by_secret", _key(meta)):
            kick_channel(rt, channel, "secret")
            for rule in rules_of_channel(rt, channel):
                kick_rule(rt, rule, "secret")


def _drift(registry: kopf.OperatorRegistry, opts: Options) -> None:
    """Drift: children edited or deleted by hand are restored."""
    on = kopf.on

    for group, version, plural in CHILD_KINDS:

        @on.event(group, version, plural, labels=MANAGED_BY, registry=registry, id=f"drift-{plural}")
        async def child_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
            rt = rt_of(memo, kwargs)
            meta = body.metadata
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") == "AlertConfig" and ref.get("controller"):
                    kick_config(rt, (str(meta.namespace), str(ref.get("name"))), "drift")
            owner = (meta.get("labels") or {}).get(OWNER_UID_LABEL)
            if owner:  # an evaluator grant in another namespace (see grants.py)
                for ckey, config in rt.view("klaxon_configs").items():
                    if (config.get("metadata") or {}).get("uid") == owner:
                        kick_config(rt, ckey, "drift")

    @on.event(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        registry=registry,
        when=lambda name, **_: name == PROMRULE_CRD,
    )
    async def promrule_crd_event(memo: kopf.Memo, **kwargs: Any) -> None:
        rt = rt_of(memo, kwargs)
        crd_installed(rt)
        for key in rt.keys("klaxon_rules"):
            kick_rule(rt, key, "crd")


def _admission(registry: kopf.OperatorRegistry, opts: Options, webhook: bool) -> None:
    """Admission (kopf refuses admission handlers without ``settings.admission.server``)."""
    on = kopf.on
    kinds = tuple(PLURALS.items())
    for kind, plural in kinds if webhook else ():
        on.validate(
            GROUP,
            VERSION,
            plural,
            id=f"validate-{kind.lower()}",
            registry=registry,
            operations=["CREATE", "UPDATE"],
        )(validator(kind))
