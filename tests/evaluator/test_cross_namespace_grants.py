"""An AlertConfig that admits other namespaces: the operator grants its evaluator exactly what it
then uses there (emulated API + the real kopf operator + `klaxon evaluator` + real Prometheus +
a local webhook receiver).

The emulator does not enforce RBAC, so every request the evaluator made is replayed against the
Roles, ClusterRoles and bindings the operator created (``support.rbac_check``, the API server's
rules). Removing the operator's grant turns the same requests into denials: the check can fail.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from evaluator.helpers import MIN, T0, minutes, run_loop
from klaxon.api.constants import OWNER_UID_LABEL
from klaxon.cli.main import build_parser
from klaxon.kube.client import KubeClient
from klaxon.operator.grants import collect_orphans, grant_name
from kube_harness import client_configuration, wait_for
from kube_harness.fixtures import kopf_runner, kopf_settings
from support.operator_helpers import start_operator
from support.rbac_check import denied
from support.receiver import Receiver

__all__ = ["kopf_runner", "kopf_settings"]

AR = "klaxon.dev/v1alpha1/alertrules"
AC = "klaxon.dev/v1alpha1/alertconfigs"
NC = "klaxon.dev/v1alpha1/notificationchannels"
ROLES = "rbac.authorization.k8s.io/v1/roles"
BINDINGS = "rbac.authorization.k8s.io/v1/rolebindings"
CROLES = "rbac.authorization.k8s.io/v1/clusterroles"
CBINDINGS = "rbac.authorization.k8s.io/v1/clusterrolebindings"
SA = ("mon", "klaxon-eval-main")
GRANT = grant_name("mon", "main")
NOW = T0 + 60 * MIN


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def setup(kube: Any, prom_url: str, hook_url: str, allowed: list[str]) -> None:
    for ns in ("mon", "team", "other"):
        kube.create_object("v1/namespaces", {"metadata": {"name": ns}})
    kube.create_object(
        "v1/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team-hook"}, "data": {"url": b64(hook_url)}},
        namespace="team",
    )
    kube.create_object(
        NC,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "NotificationChannel",
            "metadata": {"name": "hook"},
            "spec": {"type": "webhook", "webhook": {"urlSecret": {"name": "team-hook", "key": "url"}}},
        },
        namespace="team",
    )
    kube.create_object(
        AC,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertConfig",
            "metadata": {"name": "main"},
            "spec": {"prometheus": {"url": prom_url}, "allowedNamespaces": allowed},
        },
        namespace="mon",
    )
    kube.create_object(
        AR,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertRule",
            "metadata": {"name": "hot-room"},
            "spec": {
                "configRef": {"name": "main", "namespace": "mon"},
                "severity": "critical",
                "query": {"metric": "temp", "splitBy": ["room"], "window": "5m"},
                "condition": {"operator": "gt", "threshold": 80},
                "evaluation": {"engine": "evaluator"},
                "notify": {"channels": ["hook"]},
            },
        },
        namespace="team",
    )


def granted(kube: Any) -> list[str] | None:
    return ((kube.get_object(AC, "main", "mon") or {}).get("status") or {}).get("grantedNamespaces")


async def run_evaluator(kube: Any, kube_api: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> int:
    """`klaxon evaluator --once` in process; returns where its requests start in the log."""
    since = len(kube.log)
    args = build_parser().parse_args(
        ["evaluator", "--config", "mon/main", "--once", "--metrics-port", "0", "--state-dir", str(tmp_path)]
    )
    assert await asyncio.wait_for(run_loop(args, kube_api, asyncio.Event(), clock=lambda: NOW), timeout=60) == 0
    return since


async def test_listed_namespace_gets_a_role_the_evaluator_stays_within(
    kube, kube_api, kopf_runner, prometheus_server, receiver: Receiver, monkeypatch, tmp_path
) -> None:
    prom = prometheus_server(series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 120 * MIN, 95.0))])
    setup(kube, prom.url, f"{receiver.url}/hooks/team", allowed=["team"])
    runner = await start_operator(kube, kopf_runner)
    await wait_for(lambda: granted(kube) == ["team"], timeout=10, message=lambda: f"status: {granted(kube)}")
    await wait_for(lambda: (kube.get_object(NC, "hook", "team") or {}).get("status"), timeout=10)

    uid = kube.get_object(AC, "main", "mon")["metadata"]["uid"]
    role = kube.get_object(ROLES, GRANT, "team")
    binding = kube.get_object(BINDINGS, GRANT, "team")
    for obj in (role, binding):
        assert "ownerReferences" not in obj["metadata"]  # not allowed across namespaces
        assert obj["metadata"]["labels"][OWNER_UID_LABEL] == uid
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA[1], "namespace": SA[0]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": GRANT}
    [secrets] = [r for r in role["rules"] if r["resources"] == ["secrets"]]
    assert secrets["resourceNames"] == ["team-hook"]  # the team channel's Secret, nothing else
    assert not [r for r in role["rules"] if "alertconfigs" in r["resources"]]  # its config is in "mon"
    assert kube.list_objects(CROLES) == [] and kube.list_objects(ROLES, "other") == []
    await runner.stop()

    since = await run_evaluator(kube, kube_api, monkeypatch, tmp_path)
    rule = kube.get_object(AR, "hot-room", "team")
    assert rule["status"]["state"] == "Firing"
    assert [h.path for h in receiver.accepted] == ["/hooks/team"]
    made = kube.log[since:]
    assert {r.namespace for r in made if r.resource == AR} == {"mon", "team"}  # never cluster-wide
    assert denied(kube, SA, made) == []

    # the check has teeth: without the operator's Role in "team" those requests are refused
    kube.delete_object(ROLES, GRANT, "team")
    refused = denied(kube, SA, made)
    assert refused and all("/namespaces/team/" in r for r in refused), refused


async def test_grants_follow_the_spec_and_go_with_the_config(
    kube, kube_api, kopf_runner, prometheus_server, receiver: Receiver, monkeypatch, tmp_path
) -> None:
    prom = prometheus_server(series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 120 * MIN, 95.0))])
    setup(kube, prom.url, f"{receiver.url}/hooks/team", allowed=["team", "other"])
    await start_operator(kube, kopf_runner)
    await wait_for(lambda: granted(kube) == ["other", "team"], timeout=10, message=lambda: f"{granted(kube)}")
    assert kube.get_object(ROLES, GRANT, "other") is not None

    # narrowed: the Role and RoleBinding in the namespace no longer listed are deleted
    kube.patch_object(AC, "main", {"spec": {"allowedNamespaces": ["team"]}}, "mon")
    await wait_for(lambda: granted(kube) == ["team"], timeout=10, message=lambda: f"{granted(kube)}")
    assert kube.get_object(ROLES, GRANT, "other") is None and kube.get_object(BINDINGS, GRANT, "other") is None
    assert kube.get_object(ROLES, GRANT, "team") is not None

    # every namespace: Roles where its rules are, nothing cluster-scoped; the evaluator follows the
    # granted namespaces (status.grantedNamespaces) while it runs
    kube.patch_object(AC, "main", {"spec": {"allowedNamespaces": ["*"]}}, "mon")
    await wait_for(lambda: granted(kube) == ["team"], timeout=10, message=lambda: f"{granted(kube)}")
    assert kube.get_object(ROLES, GRANT, "other") is None  # no rules there: no access there

    kube_api.user_agent = "klaxon-evaluator-under-test"  # tells its requests from the operator's
    since = len(kube.log)
    stop = asyncio.Event()
    args = build_parser().parse_args(
        ["evaluator", "--config", "mon/main", "--tick", "0.05", "--metrics-port", "0", "--state-dir", str(tmp_path)]
    )
    task = asyncio.create_task(run_loop(args, kube_api, stop, clock=lambda: NOW))
    try:
        await wait_for(lambda: rule_state(kube, "hot-room", "team") == "Firing", timeout=10)
        newcomer = kube.get_object(AR, "hot-room", "team")
        newcomer = {k: newcomer[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": "new"}}
        kube.create_object(AR, newcomer, namespace="other")  # a rule in a namespace without access yet
        await wait_for(lambda: granted(kube) == ["other", "team"], timeout=10, message=lambda: f"{granted(kube)}")
        await wait_for(lambda: rule_state(kube, "new", "other") == "Firing", timeout=10)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    made = [r for r in kube.log[since:] if r.user_agent == "klaxon-evaluator-under-test"]
    assert not [r.path for r in made if r.resource == AR and r.namespace is None]  # never cluster-wide
    assert {r.namespace for r in made if r.resource == AR} == {"mon", "team", "other"}
    assert kube.list_objects(CROLES) == [] and kube.list_objects(CBINDINGS) == []
    assert denied(kube, SA, made) == []  # every request of the evaluator within its Roles

    # a hand-deleted grant is restored at once (drift watch), then the config's deletion takes
    # every grant along (no owner reference could)
    kube.delete_object(ROLES, GRANT, "team")
    await wait_for(lambda: kube.get_object(ROLES, GRANT, "team") is not None, timeout=10)
    kube.delete_object(AC, "main", "mon")
    await wait_for(
        lambda: not kube.list_objects(ROLES, "team") and not kube.list_objects(ROLES, "other")
        and not kube.list_objects(BINDINGS, "team"),
        timeout=10,
        message=lambda: f"left: {[r['metadata']['name'] for r in kube.list_objects(ROLES, 'team')]}",
    )


def rule_state(kube: Any, name: str, ns: str) -> str | None:
    return ((kube.get_object(AR, name, ns) or {}).get("status") or {}).get("state")


async def test_orphaned_grants_are_collected_and_others_kept(kube) -> None:
    """Grants of a config deleted while no operator ran go at the next resync; live ones stay."""
    labels = {
        "app.kubernetes.io/managed-by": "klaxon",
        "klaxon.dev/alertconfig-namespace": "mon",
        OWNER_UID_LABEL: "gone-uid",
    }
    kube.create_object(ROLES, {"metadata": {"name": "klaxon-eval.mon.old", "labels": labels}}, namespace="team")
    kube.create_object(BINDINGS, {"metadata": {"name": "klaxon-eval.mon.old", "labels": labels},
                                  "roleRef": {"kind": "Role", "name": "klaxon-eval.mon.old"}}, namespace="other")
    live = {**labels, OWNER_UID_LABEL: "live-uid"}
    kube.create_object(ROLES, {"metadata": {"name": "klaxon-eval.mon.new", "labels": live}}, namespace="team")
    kube.create_object(ROLES, {"metadata": {"name": "someone-elses", "labels": {"x": "y"}}}, namespace="team")
    client = await KubeClient.connect(client_configuration(kube))
    try:
        deleted = await collect_orphans(client, {"live-uid"})
    finally:
        await client.close()
    assert sorted(deleted) == ["Role team/klaxon-eval.mon.old", "RoleBinding other/klaxon-eval.mon.old"]
    assert sorted(r["metadata"]["name"] for r in kube.list_objects(ROLES, "team")) == [
        "klaxon-eval.mon.new",
        "someone-elses",
    ]


async def test_orphaned_grants_are_looked_for_only_in_watched_namespaces(kube: Any) -> None:
    """An operator limited to namespaces (watchNamespaces) may not list cluster-wide: it never asks."""
    labels = {"klaxon.dev/alertconfig-namespace": "mon", OWNER_UID_LABEL: "gone-uid"}
    for ns in ("team", "other"):
        kube.create_object(ROLES, {"metadata": {"name": "klaxon-eval.mon.old", "labels": labels}}, namespace=ns)
    mark = len(kube.log)
    client = await KubeClient.connect(client_configuration(kube))
    try:
        deleted = await collect_orphans(client, set(), ["team"])
    finally:
        await client.close()
    assert deleted == ["Role team/klaxon-eval.mon.old"]
    assert [r["metadata"]["name"] for r in kube.list_objects(ROLES, "other")] == ["klaxon-eval.mon.old"]
    lists = [r for r in kube.log[mark:] if r.method == "GET"]
    assert lists and all(r.namespace == "team" for r in lists), [r.path for r in lists]


def synced(kube: Any) -> dict[str, Any]:
    conds = ((kube.get_object(AC, "main", "mon") or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == "Synced"), {})


async def test_a_namespace_that_does_not_exist_yet_is_granted_when_it_appears(kube, kopf_runner) -> None:
    kube.create_object("v1/namespaces", {"metadata": {"name": "mon"}})
    # What the API server answers for an object in a missing namespace (the emulator has no such check).
    kube.inject_error(404, method="POST", resource=ROLES, namespace="later", times=10_000)
    # ... and for one being deleted (a Forbidden that says so): no namespace to grant in either
    kube.inject_error(403, method="POST", resource=ROLES, namespace="closing", times=10_000,
                      message='roles "x" is forbidden: unable to create new content in namespace closing '
                              'because it is being terminated')
    kube.create_object(
        AC,
        {"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertConfig", "metadata": {"name": "main"},
         "spec": {"prometheus": {"url": "http://prometheus:9090"}, "allowedNamespaces": ["later", "closing"]}},
        namespace="mon",
    )
    await start_operator(kube, kopf_runner)
    await wait_for(lambda: "later" in synced(kube).get("message", ""), timeout=10, message=lambda: f"{synced(kube)}")
    assert synced(kube)["status"] == "True"
    assert "namespace(s) closing, later do not exist" in synced(kube)["message"]
    assert granted(kube) == []

    kube.clear_faults()
    kube.create_object("v1/namespaces", {"metadata": {"name": "later"}})
    await wait_for(lambda: granted(kube) == ["closing", "later"], timeout=10, message=lambda: f"{granted(kube)}")
    assert kube.get_object(BINDINGS, GRANT, "later") is not None
    kube.log[:] = [r for r in kube.log if r.status not in (403, 404) or r.method != "POST"]
