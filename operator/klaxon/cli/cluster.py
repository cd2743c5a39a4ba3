"""The cluster connection of a command (``status``, ``entries``, ``evaluator``): credentials and API
failures become one-line ``CliError``s that say what is wrong and what to do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .errors import CliError, UsageError

if TYPE_CHECKING:
    from ..kube.client import Configuration, KubeClient


async def credentials(kubeconfig: str | None, context: str | None = None) -> Configuration:
    """The client configuration, or ``UsageError`` when there are no usable credentials."""
    from ..kube.kubeconfig import CredentialsError, configuration

    try:
        return await configuration(kubeconfig, context)
    except CredentialsError as e:
        raise UsageError(str(e)) from None


def api_problem(exc: BaseException, server: str) -> str:
    """One line for a failed API call: the server's own reason, or why it could not be reached."""
    from ..kube.client import KubeError

    if isinstance(exc, KubeError):
        if exc.resource_missing:
            return (
                f"{server} does not serve Klaxon's resources: the CRDs are not installed "
                "(kubectl apply -f crds/, or install the Helm chart)"
            )
        if exc.status in (401, 403):
            return f"{server} refused the request: {exc} (check the credentials and their RBAC permissions)"
        return f"{server} answered {exc}"
    if isinstance(exc, TimeoutError):
        return f"{server} did not answer in time (check the address in the kubeconfig and the network)"
    what = " ".join(str(exc).split()) or type(exc).__name__
    return f"cannot reach the Kubernetes API at {server}: {what} (is the cluster up and the kubeconfig's server right?)"


#: A person waits for these commands: a restarting API server is retried this long, not the
#: processes' 10 s, before the command says what is wrong.
INTERACTIVE_RETRY_S = 3.0


@asynccontextmanager
async def cluster(
    kubeconfig: str | None, context: str | None = None, field_manager: str = "klaxon-cli"
) -> AsyncIterator[KubeClient]:
    """A client for the duration of a command; API failures inside the block become ``CliError``."""
    from ..kube.client import FAILURES, KubeClient, Retry

    cfg = await credentials(kubeconfig, context)
    kube = await KubeClient.connect(configuration=cfg, field_manager=field_manager)
    kube.retry = Retry(budget=INTERACTIVE_RETRY_S)
    try:
        yield kube
    except FAILURES as e:
        raise CliError(api_problem(e, str(cfg.host))) from None
    finally:
        await kube.close()
