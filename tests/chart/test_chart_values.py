"""Bad values are refused before anything reaches a cluster, with a message that says what to do."""

from __future__ import annotations

from typing import Any

import pytest

CA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="

SCHEMA_REJECTS: list[tuple[str, dict[str, Any], str]] = [
    ("replicas-string", {"replicas": "three"}, "at '/replicas': got string, want integer"),
    ("replicas-zero", {"replicas": 0}, "/replicas"),
    ("log-level", {"logLevel": "verbose"},
     "at '/logLevel': value must be one of 'debug', 'info', 'warning', 'error'"),
    ("unknown-top-level-key", {"replica": 2}, "additional properties 'replica' not allowed"),
    ("unknown-nested-key", {"webhook": {"certmanager": {"enabled": True}}},
     "additional properties 'certmanager' not allowed"),
    ("failure-policy", {"webhook": {"failurePolicy": "Sometimes"}}, "/webhook/failurePolicy"),
    ("webhook-timeout", {"webhook": {"timeoutSeconds": 60}}, "/webhook/timeoutSeconds"),
    ("ca-bundle-not-base64", {"webhook": {"caBundle": "-----BEGIN CERTIFICATE-----"}}, "/webhook/caBundle"),
    ("digest", {"image": {"digest": "latest"}}, "/image/digest"),
    ("pull-policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("namespace-name", {"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ("port", {"metrics": {"port": 70000}}, "/metrics/port"),
    ("pdb-percent", {"pdb": {"maxUnavailable": "half"}}, "/pdb/maxUnavailable"),
    ("pod-labels-not-strings", {"podLabels": {"tier": 1}}, "/podLabels/tier"),
]


@pytest.mark.parametrize(("values", "message"), [(v, m) for _, v, m in SCHEMA_REJECTS],
                         ids=[n for n, _, _ in SCHEMA_REJECTS])
def test_schema_rejects(render_error, values: dict[str, Any], message: str) -> None:
    err = render_error(values)
    assert "values don't meet the specifications of the schema" in err
    assert message in err, err


FAILS: list[tuple[str, dict[str, Any], str]] = [
    ("replicas-without-ha", {"replicas": 2}, "replicas=2 needs ha.enabled=true"),
    ("ha-with-one-replica", {"ha": {"enabled": True}}, "ha.enabled=true needs replicas >= 2"),
    ("lease-shorter-than-deadline",
     {"replicas": 2, "ha": {"enabled": True, "leaseDurationSeconds": 5, "renewDeadlineSeconds": 10}},
     "ha.leaseDurationSeconds must be greater than ha.renewDeadlineSeconds"),
    ("both-certificate-sources",
     {"webhook": {"certManager": {"enabled": True}, "existingSecret": "tls", "caBundle": CA}},
     "are exclusive: choose where the webhook certificate comes from"),
    ("secret-without-ca", {"webhook": {"certManager": {"enabled": False}, "existingSecret": "tls"}},
     "webhook.existingSecret needs webhook.caBundle"),
    ("service-monitor-without-metrics", {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
     "metrics.serviceMonitor.enabled=true needs metrics.enabled=true"),
    ("pdb-both", {"pdb": {"minAvailable": 1}}, "pdb.maxUnavailable and pdb.minAvailable are exclusive"),
    ("pdb-neither", {"pdb": {"maxUnavailable": None}}, "pdb.enabled=true needs pdb.maxUnavailable or"),
    ("pdb-blocks-drains", {"pdb": {"maxUnavailable": None, "minAvailable": 1}},
     "pdb.minAvailable=1 with replicas=1 would block every node drain"),
    ("default-config-not-watched",
     {"watchNamespaces": ["team-a"], "defaultAlertConfig": {"enabled": True}},
     'defaultAlertConfig.namespace "default-ns" is not in watchNamespaces'),
    ("service-account-without-name", {"serviceAccount": {"create": False}},
     "serviceAccount.create=false needs serviceAccount.name"),
]


@pytest.mark.parametrize(("values", "message"), [(v, m) for _, v, m in FAILS], ids=[n for n, _, _ in FAILS])
def test_impossible_combinations_fail(helm, tmp_path, values: dict[str, Any], message: str) -> None:
    from support.chart import CHART, HelmError, run_helm

    with pytest.raises(HelmError) as exc:
        run_helm(helm, "template", "klaxon", str(CHART), "--namespace", "default-ns",
                 values=values, tmp=tmp_path)
    assert "execution error" in exc.value.stderr
    assert message in exc.value.stderr, exc.value.stderr
