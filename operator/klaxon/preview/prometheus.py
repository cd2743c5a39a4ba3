"""A rule's history from Prometheus for ``klaxon preview --prometheus``.

A replay evaluates the rule at every evaluation time of ``[from - warmup, to]``: a dynamic rule
with four lookback weeks at a 1-minute interval is 40,000+ evaluations, and Prometheus refuses
range queries of more than 11,000 points per series. The value query therefore runs in chunks
of at most ``RANGE_POINTS`` evaluations, and a dynamic rule's raw samples are read in day-long
range-vector slices; at most ``PARALLEL`` requests are in flight at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from klaxon.api.alertrule import Query
from klaxon.compile.query import raw_range, series_selector
from klaxon.preview.data import RawSeries
from klaxon.preview.run import PreviewError

if TYPE_CHECKING:
    from klaxon.prom.client import PrometheusClient, RangeSeries

#: Evaluations per range query (Prometheus refuses more than 11,000 points per series).
RANGE_POINTS = 10_000
#: Raw samples are read in slices of this many seconds (one range-vector query each).
RAW_SLICE_S = 86_400.0
#: Requests in flight at once: a month of history is read a few at a time, not all at once.
PARALLEL = 4

T = TypeVar("T")
LabelKey = tuple[tuple[str, str], ...]


async def _bounded(calls: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run the calls with at most ``limit`` in flight; results in call order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    tasks = [asyncio.ensure_future(one(c)) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        # the first failure ends the read: the others stop before the caller closes their session
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def chunks(size: int, per: int | None = None) -> list[tuple[int, int]]:
    """``[a, b)`` index ranges covering ``size`` evaluations, ``per`` (``RANGE_POINTS``) at most each."""
    per = per or RANGE_POINTS
    return [(a, min(size, a + per)) for a in range(0, size, per)]


def slices(start: float, end: float, span: float = RAW_SLICE_S) -> list[tuple[float, float]]:
    """``(end of slice, its length)`` back from ``end`` to ``start``: the range vectors to read."""
    out = []
    t = end
    while t > start:
        length = min(span, t - start)
        out.append((t, length))
        t -= length
    return out


class PrometheusFetch:
    """A rule's data from Prometheus through `klaxon.prom.client.PrometheusClient` (imported lazily).

    `evaluate` runs a query at every evaluation time (range queries on the rule's grid); calling
    the object reads raw samples (range-vector queries), which only a dynamic rule's baseline needs.
    """

    def __init__(
        self,
        url: str,
        interval_s: float,
        token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | None = None,
        insecure: bool = False,
        timeout: float = 30.0,
        parallel: int = PARALLEL,
    ) -> None:
        self.url, self.interval_s, self.token, self.basic_auth = url, interval_s, token, basic_auth
        self.ca_file, self.insecure, self.timeout, self.parallel = ca_file, insecure, timeout, parallel
        #: Requests sent by the last call (for tests and the curious: chunks and slices add up here).
        self.requests = 0

    def _client(self) -> PrometheusClient:
        from klaxon.prom.client import PrometheusClient

        return PrometheusClient(
            self.url,
            token=self.token,
            basic_auth=self.basic_auth,
            ca_file=self.ca_file,
            insecure=self.insecure,
            timeout=self.timeout,
        )

    async def _evaluate(self, expr: str, grid: np.ndarray) -> list[tuple[dict[str, str], np.ndarray]]:
        from klaxon.prom.client import PrometheusError

        step = self.interval_s
        try:
            async with self._client() as client:
                parts = chunks(grid.size)

                def query(a: int, b: int) -> Callable[[], Awaitable[list[RangeSeries]]]:
                    return lambda: client.query_range(expr, float(grid[a]), float(grid[b - 1]), step)

                results = await _bounded([query(a, b) for a, b in parts], self.parallel)
                self.requests = client.requests
        except PrometheusError as e:
            raise PreviewError(f"{self.url}: query {expr!r} failed: {e}") from None
        out: dict[LabelKey, tuple[dict[str, str], np.ndarray]] = {}
        for (a, b), series in zip(parts, results, strict=True):
            for r in series:
                key = tuple(sorted(r.labels.items()))
                x = out.setdefault(key, (dict(r.labels), np.full(grid.shape, np.nan)))[1]
                idx = a + np.rint((r.times - grid[a]) / step).astype(np.int64)
                ok = (idx >= a) & (idx < b)  # a server answering off the grid cannot write past the chunk
                x[idx[ok]] = r.values[ok]
        return [out[k] for k in sorted(out)]

    def evaluate(self, expr: str, grid: np.ndarray) -> list[tuple[dict[str, str], np.ndarray]]:
        return asyncio.run(self._evaluate(expr, grid)) if grid.size else []

    async def _raw(self, q: Query, start: float, end: float) -> list[RawSeries]:
        from klaxon.prom.client import PrometheusError

        parts = slices(start, end)
        try:
            async with self._client() as client:

                def read(t: float, span: float) -> Callable[[], Awaitable[list[RangeSeries]]]:
                    return lambda: client.query_matrix(raw_range(q, span, self.interval_s), t)

                results = await _bounded([read(t, span) for t, span in parts], self.parallel)
                self.requests = client.requests
        except PrometheusError as e:
            raise PreviewError(f"{self.url}: reading the samples of {series_selector(q)} failed: {e}") from None
        merged: dict[LabelKey, list[RangeSeries]] = {}
        for series in reversed(results):  # oldest slice first
            for r in series:
                merged.setdefault(tuple(sorted(r.labels.items())), []).append(r)
        out = []
        for key, pieces in sorted(merged.items()):
            times = np.concatenate([p.times for p in pieces])
            values = np.concatenate([p.values for p in pieces])
            # drop NaN (stale markers), and a sample on a slice boundary read twice (a Prometheus
            # whose range vectors include both ends)
            ok = np.isfinite(values) & np.concatenate(([True], np.diff(times) > 0))
            out.append(RawSeries(dict(key), times[ok], values[ok], self.url))
        return out

    def __call__(self, q: Query, operand: str | None, start: float, end: float) -> list[RawSeries]:
        return asyncio.run(self._raw(q, start, end))
