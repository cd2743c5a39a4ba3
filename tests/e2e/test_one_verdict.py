"""One verdict at every layer, judged by a real API server with the operator's webhook registered.

Every corpus file goes through ``kubectl create --dry-run=server`` as a user would send it: what
the CRD's schema and CEL refuse is refused naming the field ``klaxon validate`` names; what they
let through (``# admission: webhook``) the webhook refuses with the CLI's very message; every
valid document is accepted. (tests/e2e/test_corpus_apiserver.py holds the CRD alone to its part.)
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from api.corpus import INVALID, VALID, documents, header
from e2e.procs import kubectl, operator_process, registered_webhook, webhook_certs
from e2e.scenario import KubeClient, install_crds, namespaces
from e2e.test_e2e_cluster import unique
from klaxon.cli.validate import file_verdict

pytestmark = pytest.mark.e2e
FILE_NAMESPACES = ("team-a", "n" * 63)  # the corpus' own metadata.namespace values that are valid


def namespace_args(path: Path, default: str) -> tuple[str, ...]:
    """``-n default`` unless the file names its namespaces itself (kubectl refuses a mismatch)."""
    named = any(isinstance(d, dict) and (d.get("metadata") or {}).get("namespace") for d in documents(path))
    return () if named else ("-n", default)


async def test_the_api_server_with_the_webhook_gives_the_verdict_of_klaxon_validate(
    cluster: KubeClient, kubeconfig: str, tmp_path: Path
) -> None:
    await install_crds(cluster)
    ns = unique()
    selector = {"klaxon-e2e-webhook": ns}
    wrong: list[str] = []
    layers = {"schema/CEL": 0, "webhook": 0, "kubectl": 0, "accepted": 0}
    with webhook_certs() as certs:
        async with (
            namespaces(cluster, ns, *FILE_NAMESPACES, labels=selector),
            registered_webhook(cluster, ns, certs, selector),
            operator_process(kubeconfig, (ns, *FILE_NAMESPACES), tmp_path, webhook=certs) as operator,
        ):
            gate = asyncio.Semaphore(4)

            async def send(path: Path) -> subprocess.CompletedProcess[str]:
                async with gate:
                    args = ("create", "--dry-run=server", *namespace_args(path, ns), "-f", str(path), "-o", "name")
                    return await asyncio.to_thread(kubectl, kubeconfig, *args)

            invalid = [p for p in INVALID if header(p, "admission") != "yaml"]  # the CLI's own YAML rules
            results = await asyncio.gather(*(send(p) for p in [*invalid, *VALID]))
            for path, result in zip([*invalid, *VALID], results, strict=True):
                said = result.stderr.strip()
                ok, problems = file_verdict(path)
                if path in VALID:
                    layers["accepted"] += result.returncode == 0
                    if result.returncode != 0 or not ok:
                        wrong.append(f"{path.name}: valid, but the server said {said!r}, the CLI {problems}")
                    continue
                if ok:
                    wrong.append(f"{path.name}: klaxon validate accepts it")
                elif result.returncode == 0:
                    wrong.append(f"{path.name}: the API server accepts it; klaxon validate: {problems}")
                elif "admission webhook" in said:
                    layers["webhook"] += 1
                    missing = [message for _, message in problems if message not in said]
                    if missing:
                        wrong.append(f"{path.name}: the webhook said {said!r}; the CLI said {missing}")
                elif " is invalid: " in said or "Error from server" in said:
                    layers["schema/CEL"] += 1
                    fields = [field for field, _ in problems]
                    # The API server names the field in its own words ("spec.x: Invalid value",
                    # 'unknown field "spec.x"', "ObjectMeta.name"): its last segment is common ground.
                    if not any(f.rsplit(".", 1)[-1] in said for f in fields):
                        wrong.append(f"{path.name}: the server said {said!r}; the CLI named {fields}")
                else:
                    # refused before it reached the server: NaN is not JSON, a number is no name
                    layers["kubectl"] += 1
                    fields = [field for field, _ in problems]
                    if header(path, "admission") != "client" and not any(f.rsplit(".", 1)[-1] in said for f in fields):
                        wrong.append(f"{path.name}: kubectl said {said!r}; the CLI named {fields}")
            print(f"corpus through the real API server: {len(invalid)} invalid, {len(VALID)} valid files; {layers}")
            if wrong:
                print(operator.output()[-4000:])
    assert wrong == [], "\n".join(wrong)
