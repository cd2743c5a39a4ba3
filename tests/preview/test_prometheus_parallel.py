"""`--prometheus` range queries: chunks within the server's limit, in flight at once up to the bound.

A local HTTP server that answers like Prometheus after a pause and records what was asked and how
many requests it held at once (real Prometheus answers too fast to see the overlap).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pytest

from klaxon.preview.prometheus import RANGE_POINTS, PrometheusFetch


class _Slow(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.asked: list[tuple[float, float, float]] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Slow

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        start, end, step = (float(form[k][0]) for k in ("start", "end", "step"))
        with self.server.lock:
            self.server.in_flight += 1
            self.server.most = max(self.server.most, self.server.in_flight)
            self.server.asked.append((start, end, step))
        time.sleep(0.3)
        n = round((end - start) / step) + 1
        if n > 11_000:
            status, body = 400, {"status": "error", "errorType": "bad_data", "error": "exceeded maximum resolution"}
        else:
            values = [[start + i * step, "1"] for i in range(n)]
            status, body = (
                200,
                {
                    "status": "success",
                    "data": {"resultType": "matrix", "result": [{"metric": {"a": "b"}, "values": values}]},
                },
            )
        with self.server.lock:
            self.server.in_flight -= 1
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def slow_prometheus() -> Iterator[_Slow]:
    server = _Slow()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("bound", [1, 3])
def test_range_queries_are_split_and_run_in_parallel_within_the_bound(slow_prometheus: _Slow, bound: int) -> None:
    step = 60.0
    grid = 1_780_000_020.0 + step * np.arange(4 * RANGE_POINTS + 1234)  # 28 days at 1m and then some
    url = f"http://127.0.0.1:{slow_prometheus.server_address[1]}"
    fetch = PrometheusFetch(url, step, parallel=bound)
    ((labels, x),) = fetch.evaluate("x", grid)
    assert labels == {"a": "b"} and np.isfinite(x).all()  # every evaluation time answered, in place
    asked = sorted(slow_prometheus.asked)
    assert len(asked) == 5 == fetch.requests
    assert all(round((e - s) / st) + 1 <= RANGE_POINTS for s, e, st in asked)
    assert asked[0][0] == grid[0] and asked[-1][1] == grid[-1]
    assert all(b[0] - a[1] == step for a, b in itertools.pairwise(asked))  # no gap, no overlap
    assert slow_prometheus.most == bound
