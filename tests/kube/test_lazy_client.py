"""kubernetes_asyncio made lazy (klaxon.kube.lazy_client): few modules for the operator, the same
library for anyone who uses more of it. Each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

SRC = pathlib.Path(__file__).resolve().parents[2] / "operator"


def run(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_operator_and_kopf_load_a_few_modules_of_kubernetes_asyncio() -> None:
    got = run(
        """
        import json, sys
        import klaxon.operator.handlers, klaxon.kube.client
        from kopf._cogs.helpers import thirdparty
        mods = [m for m in sys.modules if m.startswith("kubernetes_asyncio")]
        print(json.dumps({"count": len(mods), "pod": "kubernetes_asyncio.client.models.v1_pod" in mods,
                          "meta": thirdparty.V1ObjectMetaAsync.__name__}))
        """
    )
    # kopf's isinstance checks still get the real V1ObjectMeta class
    assert got["meta"] == "V1ObjectMeta"
    assert got["pod"] is False
    # The package __init__s would import ~850 modules; what is used needs fewer than 40.
    assert isinstance(got["count"], int) and got["count"] < 40, got


def test_names_and_objects_are_those_of_the_real_packages() -> None:
    probe = """
        import asyncio, json, sys
        {setup}
        import kubernetes_asyncio
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client import models

        async def main():
            async with client.ApiClient() as api:  # needs a running loop
                pod = client.V1Pod(metadata=client.V1ObjectMeta(name="p"))
                return api, pod, api._ApiClient__deserialize({{"metadata": {{"name": "q"}}}}, "V1Pod")

        api, pod, back = asyncio.run(main())
        print(json.dumps({{
            "all": sorted(client.__all__), "models": len(models.__all__),
            "same": client.V1Pod is models.V1Pod is sys.modules["kubernetes_asyncio.client.models.v1_pod"].V1Pod,
            "api": client.CoreV1Api.__module__, "version": kubernetes_asyncio.__version__,
            "watch": kubernetes_asyncio.watch.Watch.__name__, "dump": api.sanitize_for_serialization(pod),
            "back": back.metadata.name, "exc": client.ApiException.__module__,
        }}))
        """
    lazy = run(probe.format(setup="import klaxon.kube"))
    plain = run(probe.format(setup="pass"))
    assert lazy == plain
    assert lazy["same"] is True and lazy["dump"] == {"metadata": {"name": "p"}} and lazy["back"] == "q"
    assert isinstance(lazy["all"], list) and "CoreV1Api" in lazy["all"] and "V1Pod" in lazy["all"]


def test_star_import_and_an_already_imported_library_are_left_as_they_are() -> None:
    got = run(
        """
        import json
        import kubernetes_asyncio.client
        from klaxon.kube.lazy_client import install
        again = install()
        from kubernetes_asyncio.client import *  # noqa: F403
        print(json.dumps({"again": again, "star": "V1Deployment" in dir()}))
        """
    )
    assert got == {"again": False, "star": True}
    star = run(
        """
        import json
        import klaxon.kube
        from kubernetes_asyncio.client.models import *  # noqa: F403
        print(json.dumps({"star": "V1Deployment" in dir() and "V1Pod" in dir()}))
        """
    )
    assert star == {"star": True}
