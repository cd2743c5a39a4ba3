"""Test harness: run real kopf operators against an in-memory Kubernetes API (kmock-based).

Typical use (see ``tests/harness_selftest`` for complete examples)::

    from kube_harness import running_operator, wait_for

    async def test_x(kube, registry):
        async with running_operator(kube, registry):
            kube.create_object('klaxon.dev/v1alpha1/alertrules', {...}, namespace='ns1')
            await wait_for(lambda: kube.get_object('v1/configmaps', 'x', 'ns1'))
"""
from .clients import api_client, client_configuration, write_kubeconfig
from .emulator import (
    DEFAULT_RESOURCES,
    EmulatedCluster,
    LoggedRequest,
    ResourceSpec,
    emulated_cluster,
    merge_patch,
)
from .runner import (
    ANNOTATIONS_PREFIX,
    OperatorRunner,
    RunnerFactory,
    connection_info,
    harness_settings,
    login_handler,
    running_operator,
    wait_for,
)

__all__ = [
    'ANNOTATIONS_PREFIX',
    'DEFAULT_RESOURCES',
    'EmulatedCluster',
    'LoggedRequest',
    'OperatorRunner',
    'ResourceSpec',
    'RunnerFactory',
    'api_client',
    'client_configuration',
    'connection_info',
    'emulated_cluster',
    'harness_settings',
    'login_handler',
    'merge_patch',
    'running_operator',
    'wait_for',
    'write_kubeconfig',
]
