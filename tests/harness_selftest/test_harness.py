"""Prove the harness: a throwaway kopf operator against the emulated cluster.

Every test here would fail on plain kmock 0.8 (see kube_harness.emulator's docstring).
"""
from __future__ import annotations

import json
from typing import Any

import kopf
import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio.client.exceptions import ApiException

from kube_harness import EmulatedCluster, OperatorRunner, RunnerFactory, client_configuration, wait_for

AR = 'klaxon.dev/v1alpha1/alertrules'
CM = 'v1/configmaps'
NS = 'ns1'


def make_registry(calls: dict[str, int], api_config: k8s_client.Configuration) -> kopf.OperatorRegistry:
    """A tiny operator: AlertRule → owned ConfigMap + status.conditions with observedGeneration."""
    registry = kopf.OperatorRegistry()

    @kopf.on.create('klaxon.dev', 'v1alpha1', 'alertrules', registry=registry)
    @kopf.on.update('klaxon.dev', 'v1alpha1', 'alertrules', field='spec', registry=registry)
    async def reconcile(body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, reason: str,
                        patch: kopf.Patch, **_: Any) -> None:
        calls[reason] = calls.get(reason, 0) + 1
        cm = {'apiVersion': 'v1', 'kind': 'ConfigMap',
              'metadata': {'name': f'{name}-rules'}, 'data': {'expr': spec.get('expr', '')}}
        kopf.adopt(cm, owner=body)
        async with k8s_client.ApiClient(configuration=api_config) as api:
            core = k8s_client.CoreV1Api(api)
            try:
                await core.create_namespaced_config_map(namespace, cm)
            except ApiException as e:
                if e.status != 409:
                    raise
                await core.patch_namespaced_config_map(f'{name}-rules', namespace, {'data': cm['data']})
        kopf.info(body, reason='Reconciled', message=f'{reason} handled')
        patch.status['conditions'] = [{'type': 'Ready', 'status': 'True',
                                       'observedGeneration': body.metadata['generation']}]

    @kopf.on.delete('klaxon.dev', 'v1alpha1', 'alertrules', registry=registry)
    async def deleted(**_: Any) -> None:
        calls['delete'] = calls.get('delete', 0) + 1

    return registry


@pytest.fixture()
def calls() -> dict[str, int]:
    return {}


@pytest.fixture()
async def operator(kube: EmulatedCluster, kopf_runner: RunnerFactory,
                   calls: dict[str, int]) -> OperatorRunner:
    """The throwaway operator, started and ready; the kube-asyncio client points at ``kube``."""
    kube.create_object('v1/namespaces', {'metadata': {'name': NS}})
    runner: OperatorRunner = kopf_runner(make_registry(calls, client_configuration(kube)))
    await runner.start()
    return runner


def rule(name: str = 'r1', expr: str = 'up == 0', labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {'apiVersion': 'klaxon.dev/v1alpha1', 'kind': 'AlertRule',
            'metadata': {'name': name, 'labels': labels or {}}, 'spec': {'expr': expr}}


def ready_generation(kube: EmulatedCluster, name: str = 'r1') -> int | None:
    obj = kube.get_object(AR, name, NS) or {}
    conditions = obj.get('status', {}).get('conditions') or [{}]
    return conditions[0].get('observedGeneration')


async def test_create_makes_child_and_status(kube: EmulatedCluster, operator: OperatorRunner,
                                             calls: dict[str, int]) -> None:
    created = kube.create_object(AR, rule(), NS)
    assert created['metadata']['generation'] == 1
    assert created['metadata']['uid'] and created['metadata']['resourceVersion']
    assert created['metadata']['creationTimestamp']

    await wait_for(lambda: ready_generation(kube) == 1, message='status.conditions for generation 1')
    child = kube.get_object(CM, 'r1-rules', NS)
    assert child is not None and child['data'] == {'expr': 'up == 0'}
    assert child['metadata']['ownerReferences'][0]['uid'] == created['metadata']['uid']
    obj = kube.get_object(AR, 'r1', NS)
    assert obj is not None
    assert 'kopf.zalando.org/KopfFinalizerMarker' in obj['metadata']['finalizers']
    assert calls == {'create': 1}
    # Events were posted for the object; no request ever touched .spec; no 5xx anywhere.
    await wait_for(lambda: kube.requests('POST', 'v1/events'), message='a posted k8s event')
    assert not [r for r in kube.requests(resource=AR, writes_only=True) if 'spec' in r.changed]
    assert not kube.errors_5xx()


async def test_update_bumps_generation_and_reruns(kube: EmulatedCluster, operator: OperatorRunner,
                                                  calls: dict[str, int]) -> None:
    kube.create_object(AR, rule(), NS)
    await wait_for(lambda: ready_generation(kube) == 1)
    rv_before = kube.get_object(AR, 'r1', NS)['metadata']['resourceVersion']  # type: ignore[index]

    patched = kube.patch_object(AR, 'r1', {'spec': {'expr': 'up == 1'}}, NS)
    assert patched['metadata']['generation'] == 2
    assert int(patched['metadata']['resourceVersion']) > int(rv_before)

    await wait_for(lambda: ready_generation(kube) == 2, message='observedGeneration 2')
    await wait_for(lambda: (kube.get_object(CM, 'r1-rules', NS) or {}).get('data') == {'expr': 'up == 1'})
    assert calls == {'create': 1, 'update': 1}
    # Status and annotation writes by kopf must not bump the generation.
    assert kube.get_object(AR, 'r1', NS)['metadata']['generation'] == 2  # type: ignore[index]


async def test_delete_runs_finalizer_path_without_errors(kube: EmulatedCluster, operator: OperatorRunner,
                                                         calls: dict[str, int]) -> None:
    kube.create_object(AR, rule(), NS)
    await wait_for(lambda: ready_generation(kube) == 1)

    marked = kube.delete_object(AR, 'r1', NS)
    assert marked['metadata']['deletionTimestamp']  # blocked by kopf's finalizer, not gone yet
    await wait_for(lambda: kube.get_object(AR, 'r1', NS) is None, message='the AlertRule to be gone')
    assert calls['delete'] == 1
    # The owned ConfigMap is garbage-collected like in a real cluster.
    await wait_for(lambda: kube.get_object(CM, 'r1-rules', NS) is None)
    # kopf used JSON-patch with a resourceVersion test for finalizers, and it succeeded first time.
    json_patches = [r for r in kube.requests('PATCH', AR) if r.content_type == 'application/json-patch+json']
    assert json_patches and all(r.status == 200 for r in json_patches)
    assert json_patches[0].body[0] == {'op': 'test', 'path': '/metadata/resourceVersion',
                                       'value': json_patches[0].body[0]['value']}
    assert not kube.errors_5xx()


async def test_restart_resumes_without_recreating(kube: EmulatedCluster, operator: OperatorRunner,
                                                  calls: dict[str, int]) -> None:
    kube.create_object(AR, rule(), NS)
    await wait_for(lambda: ready_generation(kube) == 1)
    await operator.stop()

    kube.patch_object(AR, 'r1', {'spec': {'expr': 'changed while down'}}, NS)
    await operator.start()
    await wait_for(lambda: ready_generation(kube) == 2, message='the update seen after the restart')
    assert calls == {'create': 1, 'update': 1}
    assert operator.starts == 2


async def test_json_patch_conflict_is_422(kube: EmulatedCluster) -> None:
    kube.create_object(CM, {'metadata': {'name': 'c'}, 'data': {'a': '1'}}, NS)
    ops = [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': 'stale'},
           {'op': 'replace', 'path': '/data/a', 'value': '2'}]
    async with kube.patch(f'/api/v1/namespaces/{NS}/configmaps/c', data=json.dumps(ops),
                          headers={'Content-Type': 'application/json-patch+json'}) as response:
        assert response.status == 422
    assert kube.get_object(CM, 'c', NS)['data'] == {'a': '1'}  # type: ignore[index]


async def test_status_subresource_is_separate(kube: EmulatedCluster, kube_api: k8s_client.ApiClient) -> None:
    kube.create_object(AR, rule(), NS)
    api = k8s_client.CustomObjectsApi(kube_api)
    args = ('klaxon.dev', 'v1alpha1', NS, 'alertrules', 'r1')
    # NB: kubernetes-asyncio sends dicts to custom objects as JSON-patch unless told otherwise.
    merge = 'application/merge-patch+json'
    await api.patch_namespaced_custom_object_status(*args, {'status': {'phase': 'A'}, 'spec': {'expr': 'x'}},
                                                    _content_type=merge)
    obj = kube.get_object(AR, 'r1', NS)
    assert obj is not None and obj['status'] == {'phase': 'A'} and obj['spec'] == {'expr': 'up == 0'}
    assert obj['metadata']['generation'] == 1

    await api.patch_namespaced_custom_object(*args, {'status': {'phase': 'B'}, 'spec': {'expr': 'y'}},
                                             _content_type=merge)
    obj = kube.get_object(AR, 'r1', NS)
    assert obj is not None and obj['status'] == {'phase': 'A'} and obj['spec'] == {'expr': 'y'}
    assert obj['metadata']['generation'] == 2


async def test_selectors_filter_list_and_watch(kube: EmulatedCluster, kube_api: k8s_client.ApiClient) -> None:
    kube.create_object(AR, rule('a', labels={'team': 'x', 'tier': 'p1'}), NS)
    kube.create_object(AR, rule('b', labels={'team': 'y'}), NS)
    kube.create_object(AR, rule('c'), NS)
    api = k8s_client.CustomObjectsApi(kube_api)

    async def names(**kwargs: str) -> list[str]:
        listing = await api.list_namespaced_custom_object('klaxon.dev', 'v1alpha1', NS, 'alertrules',
                                                          **kwargs)
        return [item['metadata']['name'] for item in listing['items']]

    assert await names(label_selector='team=x') == ['a']
    assert await names(label_selector='team!=x') == ['b', 'c']
    assert await names(label_selector='team in (x,y),!tier') == ['b']
    assert await names(label_selector='tier') == ['a']
    assert await names(field_selector='metadata.name=c') == ['c']

    # Watch from the list's resourceVersion: only matching events, none lost in between.
    listing = await api.list_namespaced_custom_object('klaxon.dev', 'v1alpha1', NS, 'alertrules')
    kube.create_object(AR, rule('d', labels={'team': 'x'}), NS)  # after the list, before the watch
    kube.create_object(AR, rule('e', labels={'team': 'z'}), NS)
    kube.patch_object(AR, 'b', {'metadata': {'labels': {'team': 'x'}}}, NS)  # moves into the selection
    async with kube.get(f'/apis/klaxon.dev/v1alpha1/namespaces/{NS}/alertrules', params={
            'watch': 'true', 'labelSelector': 'team=x', 'timeoutSeconds': '1',
            'resourceVersion': listing['metadata']['resourceVersion']}) as response:
        events = [json.loads(line) for line in (await response.text()).splitlines()]
    assert [(e['type'], e['object']['metadata']['name']) for e in events] == [('ADDED', 'd'), ('ADDED', 'b')]


async def test_missing_resource_is_404(kube: EmulatedCluster) -> None:
    kube.uninstall('monitoring.coreos.com/v1/prometheusrules')
    async with kube.get(f'/apis/monitoring.coreos.com/v1/namespaces/{NS}/prometheusrules') as response:
        assert response.status == 404
    async with kube.get('/apis') as response:
        groups = [group['name'] for group in (await response.json())['groups']]
    assert 'monitoring.coreos.com' not in groups and 'klaxon.dev' in groups
    kube.install('monitoring.coreos.com/v1/prometheusrules')
    async with kube.get(f'/apis/monitoring.coreos.com/v1/namespaces/{NS}/prometheusrules') as response:
        assert response.status == 200


async def test_server_side_apply_owns_fields(kube: EmulatedCluster) -> None:
    url = f'/api/v1/namespaces/{NS}/configmaps/applied'
    headers = {'Content-Type': 'application/apply-patch+yaml'}
    first = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied}\ndata: {a: "1", b: "2"}\n'
    async with kube.patch(url, params={'fieldManager': 'klaxon'}, data=first, headers=headers) as response:
        assert response.status in (200, 201)
    second = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied}\ndata: {a: "1"}\n'
    async with kube.patch(url, params={'fieldManager': 'klaxon'}, data=second, headers=headers) as response:
        assert response.status == 200
    assert kube.get_object(CM, 'applied', NS)['data'] == {'a': '1'}  # type: ignore[index]
    other = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied}\ndata: {a: "9"}\n'
    async with kube.patch(url, params={'fieldManager': 'human'}, data=other, headers=headers) as response:
        assert response.status == 409
    async with kube.patch(url, params={'fieldManager': 'human', 'force': 'true'}, data=other,
                          headers=headers) as response:
        assert response.status == 200
    assert kube.get_object(CM, 'applied', NS)['data'] == {'a': '9'}  # type: ignore[index]


async def test_namespaced_operator_lists_namespaces(kube: EmulatedCluster, kopf_runner: RunnerFactory,
                                                    calls: dict[str, int]) -> None:
    """Namespace-restricted kopf lists & watches /api/v1/namespaces (a 500 in plain kmock)."""
    kube.create_object('v1/namespaces', {'metadata': {'name': NS}})
    kube.create_object(AR, rule('other'), 'ns2')  # out of scope: must stay unhandled
    registry = make_registry(calls, client_configuration(kube))
    runner: OperatorRunner = kopf_runner(registry, namespaces=[NS])
    await runner.start()
    kube.create_object(AR, rule(), NS)
    await wait_for(lambda: ready_generation(kube) == 1)
    listings = kube.requests('GET', 'v1/namespaces')
    assert listings and all(r.status == 200 for r in listings)
    assert ready_generation(kube, 'other') is None and not kube.requests(resource=AR, name='other')


async def test_injected_error_is_retried_by_kopf(kube: EmulatedCluster, operator: OperatorRunner,
                                                 calls: dict[str, int]) -> None:
    """A transient API failure on the status patch: kopf retries and converges."""
    kube.inject_error(503, method='PATCH', resource=AR, subresource='status', times=1)
    kube.create_object(AR, rule(), NS)
    await wait_for(lambda: ready_generation(kube) == 1, timeout=10)
    statuses = [r.status for r in kube.requests('PATCH', AR, subresource='status')]
    assert statuses[0] == 503 and statuses[-1] == 200
