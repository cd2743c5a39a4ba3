"""Async client for the Prometheus HTTP API (Prometheus, Thanos, Mimir, VictoriaMetrics).

The only module of Klaxon that talks to Prometheus. One aiohttp session is reused for all
requests; 5xx answers and connection errors are retried a bounded number of times with
exponential backoff; 4xx answers (bad query, ...) are not.
"""

from __future__ import annotations

import asyncio
import base64
import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class PrometheusError(Exception):
    """A failed Prometheus request: HTTP status and/or Prometheus `errorType` when known."""

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None) -> None:
        parts = [message]
        if status is not None:
            parts.append(f"HTTP {status}")
        if error_type:
            parts.append(f"errorType={error_type}")
        super().__init__(": ".join(parts[:1]) + (f" ({', '.join(parts[1:])})" if parts[1:] else ""))
        self.message = message
        self.status = status
        self.error_type = error_type

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector (a scalar result has empty labels)."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True, eq=False)
class RangeSeries:
    """One series of a range query: sample times (unix seconds) and values, aligned."""

    labels: dict[str, str]
    times: FloatArray = field(repr=False)
    values: FloatArray = field(repr=False)


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _matrix(result: Any, path: str) -> list[RangeSeries]:
    out: list[RangeSeries] = []
    try:
        for r in result:
            vals = r.get("values", [])
            times = np.fromiter((float(v[0]) for v in vals), dtype=np.float64, count=len(vals))
            values = np.fromiter((_float(v[1]) for v in vals), dtype=np.float64, count=len(vals))
            out.append(RangeSeries(dict(r.get("metric", {})), times, values))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        # not Prometheus' matrix format (a proxy, another API): say so instead of failing on it later
        raise PrometheusError(f"{path}: the answer is not a Prometheus matrix", error_type="bad_data") from None
    return out


def _ts(t: float) -> str:
    return f"{float(t):.3f}"


class PrometheusClient:
    """Query a Prometheus-compatible API; use as ``async with PrometheusClient(url) as prom: ...``."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        server_name: str | None = None,
        insecure: bool = False,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.2,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
    ) -> None:
        if token is not None and basic_auth is not None:
            raise ValueError("set at most one of token and basic_auth")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self._headers: dict[str, str] = {"Accept": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        if basic_auth is not None:
            pair = f"{basic_auth[0]}:{basic_auth[1]}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._ssl: ssl.SSLContext | bool = True
        if (cert_file is None) != (key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        if insecure and cert_file is None:
            self._ssl = False
        elif insecure or ca_file is not None or cert_file is not None:
            ctx = ssl.create_default_context(cafile=ca_file)
            if insecure:  # still present the client certificate, verify nothing
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            if cert_file is not None:
                ctx.load_cert_chain(cert_file, key_file)  # mTLS
            self._ssl = ctx
        #: the name the server's certificate must carry (and SNI) when it differs from the URL's host
        self._server_name = server_name
        self._trace_configs = trace_configs
        self._session: aiohttp.ClientSession | None = None
        #: Number of HTTP requests sent (including retries); handy for batching metrics.
        self.requests = 0
        #: Why there is no endpoint at all (see ``unconfigured``): every request fails with it.
        self.unconfigured: str | None = None

    @classmethod
    def unconfigured_because(cls, reason: str) -> PrometheusClient:
        """A client with no endpoint: every query fails with ``reason`` (event rules need no Prometheus)."""
        client = cls("http://unconfigured.invalid", retries=0)
        client.unconfigured = reason
        return client

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                trace_configs=self._trace_configs,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def _once(self, method: str, path: str, params: Mapping[str, str] | None) -> Any:
        session = self._get_session()
        url = f"{self.base_url}{path}"
        self.requests += 1
        try:
            extra: dict[str, Any] = {"server_hostname": self._server_name} if self._server_name else {}
            if method == "POST":
                ctx = session.post(url, data=dict(params or {}), **extra)
            else:
                ctx = session.get(url, params=dict(params or {}), **extra)
            async with ctx as resp:
                try:
                    body = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    text = (await resp.text())[:200]
                    raise PrometheusError(f"{path}: non-JSON answer {text!r}", status=resp.status) from None
                if not isinstance(body, dict):
                    raise PrometheusError(f"{path}: unexpected answer", status=resp.status)
                if resp.status >= 400 or body.get("status") != "success":
                    raise PrometheusError(  # its own words, whatever else the error answer holds
                        f"{path}: {body.get('error') or resp.reason}",
                        status=resp.status,
                        error_type=body.get("errorType"),
                    )
                if not isinstance(body.get("data", {}), dict):
                    raise PrometheusError(f"{path}: unexpected answer", status=resp.status)
                return body.get("data")
        except PrometheusError:
            raise
        except TimeoutError as e:
            raise PrometheusError(f"{path}: timed out after {self.timeout}s") from e
        except aiohttp.ClientError as e:
            raise PrometheusError(f"{path}: {type(e).__name__}: {e}") from e

    async def _request(self, method: str, path: str, params: Mapping[str, str] | None = None) -> Any:
        if self.unconfigured is not None:
            raise PrometheusError(self.unconfigured)
        attempt = 0
        while True:
            try:
                return await self._once(method, path, params)
            except PrometheusError as e:
                if not e.retryable or attempt >= self.retries:
                    raise
                await asyncio.sleep(self.backoff * 2**attempt)
                attempt += 1

    async def query(self, expr: str, time: float) -> list[Sample]:
        """Instant query at `time` (unix seconds)."""
        data = await self._request("POST", "/api/v1/query", {"query": expr, "time": _ts(time)})
        rtype = data.get("resultType")
        result = data.get("result")
        try:
            if rtype == "vector":
                return [Sample(dict(r.get("metric", {})), _float(r["value"][1])) for r in result]
            if rtype == "scalar":
                return [Sample({}, _float(result[1]))]
        except (TypeError, ValueError, KeyError, IndexError, AttributeError):
            what = f"/api/v1/query: the answer is not a Prometheus {rtype}"
            raise PrometheusError(what, error_type="bad_data") from None
        raise PrometheusError(f"/api/v1/query: expected a vector, got {rtype}", error_type="bad_data")

    async def query_matrix(self, expr: str, time: float) -> list[RangeSeries]:
        """Instant query of a range vector (e.g. `m[5m]`): the raw samples of each series."""
        data = await self._request("POST", "/api/v1/query", {"query": expr, "time": _ts(time)})
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"/api/v1/query: expected a matrix, got {data.get('resultType')}")
        return _matrix(data.get("result", []), "/api/v1/query")

    async def query_range(self, expr: str, start: float, end: float, step: float) -> list[RangeSeries]:
        """Range query over `[start, end]` every `step` seconds."""
        data = await self._request(
            "POST",
            "/api/v1/query_range",
            {"query": expr, "start": _ts(start), "end": _ts(end), "step": f"{float(step):g}"},
        )
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"/api/v1/query_range: expected a matrix, got {data.get('resultType')}")
        return _matrix(data.get("result", []), "/api/v1/query_range")

    async def rules(self) -> list[dict[str, Any]]:
        """Rule groups of `/api/v1/rules`."""
        data = await self._request("GET", "/api/v1/rules")
        return list(data.get("groups", []))

    async def alerts(self) -> list[dict[str, Any]]:
        """Active alerts of `/api/v1/alerts`."""
        data = await self._request("GET", "/api/v1/alerts")
        return list(data.get("alerts", []))
