"""Serve the kube_harness emulator as a stand-alone API server with a kubeconfig, for trying the
e2e suite and the benchmark without a cluster: ``python tests/e2e/emulated_apiserver.py KUBECONFIG``.

Not a conformant cluster (no CEL, no admission, no pods): the CEL test fails against it by design.
"""

from __future__ import annotations

import asyncio
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from kube_harness import emulated_cluster, write_kubeconfig


async def main(path: str) -> None:
    async with emulated_cluster() as cluster:
        write_kubeconfig(cluster, pathlib.Path(path))
        print(f"emulated API at {cluster.url}; kubeconfig {path}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "emulated.kubeconfig"))
