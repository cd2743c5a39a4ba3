"""The corpus against a real API server without the webhook: the CRD alone decides as tests/api models it.

Every `# admission: crd` file is refused naming its field, every `webhook` file is stored
(only the webhook can refuse it), every valid document is stored. Dry-run creates with
strict field validation, as `kubectl apply` sends them, so nothing is left behind.
"""

from __future__ import annotations

from typing import Any

import pytest

from api.corpus import INVALID, VALID, documents, header
from e2e.scenario import KubeClient, KubeError, install_crds, namespaces
from klaxon.api import KINDS

pytestmark = pytest.mark.e2e
NAMESPACES = ("team-a", "n" * 63)


def _as_kubectl_sends(value: Any) -> Any:
    """Go's JSON encoding, as kubectl sends YAML: a whole float is written as an integer (2.0 -> 2)."""
    if isinstance(value, dict):
        return {k: _as_kubectl_sends(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_kubectl_sends(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


async def _create(kube: KubeClient, doc: dict) -> str | None:
    """None when the API server would store ``doc``, else its error message."""
    plural = KINDS[doc["kind"]].plural
    ns = (doc.get("metadata") or {}).get("namespace") or "team-a"
    path = f"/apis/klaxon.dev/v1alpha1/namespaces/{ns}/{plural}"
    try:
        query = {"dryRun": "All", "fieldValidation": "Strict"}
        await kube.request("POST", path, body=_as_kubectl_sends(doc), query=query)
    except KubeError as exc:
        assert 400 <= exc.status < 500, exc
        return exc.message
    return None


async def test_the_crd_alone_gives_the_corpus_verdicts(cluster: KubeClient) -> None:
    await install_crds(cluster)
    wrong: list[str] = []
    async with namespaces(cluster, *NAMESPACES):
        for path in INVALID:
            admission, field = header(path, "admission"), header(path, "field")
            if admission not in ("crd", "webhook"):
                continue  # kubectl or the YAML reader refuses these before any request
            (doc,) = documents(path)
            error = await _create(cluster, doc)
            if admission == "webhook" and error is not None:
                wrong.append(f"{path.name}: the CRD refuses what only the webhook should: {error}")
            elif admission == "crd" and (error is None or str(field).rsplit(".", 1)[-1] not in error):
                # The API server names the field in its own words: "spec.x: Invalid value",
                # 'unknown field "spec.x"', "ObjectMeta.name", 'namespaces "Team_A" not found'.
                wrong.append(f"{path.name}: expected a refusal naming {field}, got {error!r}")
        for path in VALID:
            for doc in documents(path):
                error = await _create(cluster, doc)
                if error is not None:
                    wrong.append(f"{path.name}: a valid document is refused: {error}")
    assert wrong == [], "\n".join(wrong)
