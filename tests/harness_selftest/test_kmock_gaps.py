"""Pin the kmock 0.8 gaps that kube_harness.emulator works around.

These run against *plain* ``kmock.KubernetesEmulator``. If kmock fixes a gap,
its test here fails: then simplify the harness instead of deleting the test.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator

import kmock
import pytest

BASE = '/apis/klaxon.dev/v1alpha1/namespaces/ns1/alertrules'
MERGE = {'Content-Type': 'application/merge-patch+json'}


@pytest.fixture()
async def vanilla() -> AsyncIterator[kmock.KubernetesEmulator]:
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator):
        emulator.resources['klaxon.dev/v1alpha1/alertrules'] = kmock.ResourceInfo(
            namespaced=True, kind='AlertRule', subresources={'status'})
        async with emulator.post(BASE, json={'metadata': {'name': 'a', 'labels': {'x': '1'}},
                                             'spec': {'v': 1}}) as response:
            assert response.status == 200
        yield emulator


async def test_no_server_metadata(vanilla: kmock.KubernetesEmulator) -> None:
    async with vanilla.get(f'{BASE}/a') as response:
        meta = (await response.json())['metadata']
    assert not {'resourceVersion', 'uid', 'generation', 'creationTimestamp'} & set(meta)


async def test_failed_json_patch_test_is_500(vanilla: kmock.KubernetesEmulator) -> None:
    ops = [{'op': 'test', 'path': '/spec/v', 'value': 2}]
    async with vanilla.patch(f'{BASE}/a', data=json.dumps(ops),
                             headers={'Content-Type': 'application/json-patch+json'}) as response:
        assert response.status == 500


async def test_namespaces_url_is_500(vanilla: kmock.KubernetesEmulator) -> None:
    vanilla.resources['v1/namespaces'] = kmock.ResourceInfo(namespaced=False, kind='Namespace')
    async with vanilla.get('/api/v1/namespaces') as response:
        assert response.status == 500  # kmock's URL parser crashes, declaring the resource does not help


async def test_label_selector_ignored(vanilla: kmock.KubernetesEmulator) -> None:
    async with vanilla.get(BASE, params={'labelSelector': 'x=2'}) as response:
        assert len((await response.json())['items']) == 1


async def test_status_not_separated(vanilla: kmock.KubernetesEmulator) -> None:
    async with vanilla.patch(f'{BASE}/a/status', json={'spec': {'v': 2}}, headers=MERGE) as response:
        assert (await response.json())['spec'] == {'v': 2}
    async with vanilla.patch(f'{BASE}/a', json={'status': {'s': 1}}, headers=MERGE) as response:
        assert (await response.json())['status'] == {'s': 1}


async def test_yaml_apply_ignored_and_put_missing(vanilla: kmock.KubernetesEmulator) -> None:
    async with vanilla.patch(f'{BASE}/a', params={'fieldManager': 'm'}, data='spec:\n  v: 3\n',
                             headers={'Content-Type': 'application/apply-patch+yaml'}) as response:
        assert (await response.json())['spec'] == {'v': 1}
    async with vanilla.put(f'{BASE}/a', json={'metadata': {'name': 'a'}, 'spec': {'v': 4}}) as response:
        assert response.status == 404


async def test_no_requests_attribute(vanilla: kmock.KubernetesEmulator) -> None:
    assert not hasattr(vanilla, 'requests')
    assert [r.method for r in vanilla] == ['POST']
