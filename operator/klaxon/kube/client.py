"""The one async client Klaxon uses for the Kubernetes API (besides kopf's own watches), in the
operator and the evaluator alike: get, list, watch, create, merge-patch (of the object or its
``/status``), delete.

Generic on purpose: every call names ``apiVersion`` + plural, so the same code reads and
writes PrometheusRules, Deployments and our own kinds, and every request is counted.

An API server that restarts, is briefly unreachable or overloaded is retried here, with a short
bounded backoff (``Retry``): callers see a failure only once it lasted the whole budget, and then
always as a ``KubeError`` (a transport failure is a 503, a timeout a 504), never as an aiohttp error.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from ..api.constants import API_VERSION
from ..api.constants import PLURALS as KLAXON_PLURALS
from .metrics import API_LATENCY, API_REQUESTS, API_RETRIES

Body = dict[str, Any]
T = TypeVar("T")
Items = list[Body]  # (a name of its own: KubeClient.list shadows the builtin in the class body)
#: The connection settings type, for modules outside klaxon.kube (which never import the client library).
Configuration = k8s.Configuration

MERGE_PATCH = "application/merge-patch+json"

#: Kinds Klaxon generates or reads, by (apiVersion, kind): their plural and whether namespaced.
PLURALS: dict[tuple[str, str], str] = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrules",
    ("apps/v1", "Deployment"): "deployments",
    ("v1", "Service"): "services",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "Secret"): "secrets",
    ("v1", "Event"): "events",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "clusterroles",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "clusterrolebindings",
    ("coordination.k8s.io/v1", "Lease"): "leases",
    **{(API_VERSION, kind): plural for kind, plural in KLAXON_PLURALS.items()},
}


class KubeError(Exception):
    """An API error with the status code and the server's message (what users need to read)."""

    def __init__(self, status: int, reason: str, message: str, *, unreachable: bool = False) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        #: no answer at all (connection refused or broken, timeout): the status is ours, not the server's
        self.unreachable = unreachable

    @property
    def transient(self) -> bool:
        """Worth trying again later: the server was unreachable, busy or failing (429, 5xx)."""
        return self.unreachable or self.status in TRANSIENT_STATUS

    @property
    def resource_missing(self) -> bool:
        """A 404 for the resource type itself (CRD not installed), not for one object."""
        return self.status == 404 and "could not find the requested resource" in self.message

    @classmethod
    def from_api(cls, exc: ApiException) -> KubeError:
        return cls.from_status(int(exc.status or 0), str(exc.reason or ""), exc.body)

    @classmethod
    def from_status(cls, status: int, reason: str, body: str | bytes | None) -> KubeError:
        """From a response: the server's Status in ``body`` says why."""
        message = ""
        try:
            payload = json.loads(body) if body else {}
            reason = payload.get("reason") or reason
            message = payload.get("message") or ""
        except (TypeError, ValueError, AttributeError):
            message = str(body or "")
        return cls(status, reason, message)


#: What a call to the API server raises when the call failed (the server said no, or the
#: connection broke) rather than the caller: retry these, let anything else surface.
FAILURES: tuple[type[Exception], ...] = (KubeError, aiohttp.ClientError, TimeoutError)


def unexpected(exc: BaseException) -> bool:
    """Whether a failure of an API call deserves a traceback in the log: only what the client did
    not turn into a KubeError (an API server that is away or says no is an outage or a refusal to
    report, not a bug)."""
    return not isinstance(exc, KubeError)


#: Answers that say "not now" rather than "no": the request may succeed when sent again.
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
#: ... and those after which the server has certainly not acted (safe to send a create again).
NOT_ACTED_STATUS = frozenset({429, 503})
#: One attempt's limits: connecting, and silence while reading (the API server itself gives up
#: on a request after 60 s); without them a hung server holds a call forever.
ATTEMPT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=70)


@dataclass(frozen=True)
class Retry:
    """How a request that failed transiently is retried: after ``first`` seconds, doubling up to
    ``cap`` (each delay jittered down by up to half), for as long as ``budget`` seconds in all
    since the first attempt. Short on purpose: a restarted API server is used within ``cap``
    seconds of coming back, and a longer outage is the caller's to handle (it sees a KubeError)."""

    first: float = 0.2
    cap: float = 2.0
    budget: float = 10.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay * random.uniform(0.5, 1.0)
            delay = min(self.cap, delay * 2)


NO_RETRY = Retry(budget=0.0)


def transient(exc: BaseException, method: str) -> bool:
    """Whether ``exc`` from a ``method`` call is worth sending again: transport errors and
    timeouts, 429 and 5xx; for POST (not idempotent) only what the server never acted on."""
    if isinstance(exc, ApiException):
        return int(exc.status or 0) in (NOT_ACTED_STATUS if method == "POST" else TRANSIENT_STATUS)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):  # a wrong CA stays wrong
        return False
    if method == "POST":
        return isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError)


def transport_error(exc: BaseException) -> KubeError:
    """A failure to get an answer at all, as the KubeError callers handle: 504 for a timeout, else 503."""
    if isinstance(exc, TimeoutError):
        return KubeError(
            504, "Timeout", f"no answer from the API server in time ({type(exc).__name__})", unreachable=True
        )
    return KubeError(503, "ServiceUnavailable", f"the API server could not be reached: {exc}"[:500], unreachable=True)


#: A watch asks the server to end it after 5-10 minutes (as client-go does), then resumes.
WATCH_TIMEOUT_S = (300, 600)
#: The longest watch event line read (etcd keeps objects up to 1.5 MiB).
MAX_EVENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Ref:
    """Where an object lives: enough to build its URL."""

    api_version: str
    plural: str
    namespace: str | None
    name: str | None = None

    @classmethod
    def klaxon(cls, kind: str, namespace: str | None, name: str | None = None) -> Ref:
        """One of our kinds (AlertRule, AlertConfig, NotificationChannel), or their collection."""
        return cls(API_VERSION, plural_of(API_VERSION, kind), namespace, name)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Ref:
        api_version, kind = str(body["apiVersion"]), str(body["kind"])
        meta = body.get("metadata") or {}
        return cls(api_version, plural_of(api_version, kind), meta.get("namespace"), meta.get("name"))

    def path(self, subresource: str | None = None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespace:
            base += f"/namespaces/{self.namespace}"
        base += f"/{self.plural}"
        if self.name:
            base += f"/{self.name}"
        if subresource:
            base += f"/{subresource}"
        return base


def _resource_of(path: str) -> str:
    """The plural in an API path, for metrics labels: /api[s]/<gv>[/namespaces/<ns>]/<plural>[/...]."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        return rest[2]
    return rest[0] if rest else ""


def _retry_after(exc: BaseException, delay: float) -> float:
    """The delay before sending again: a 429's ``Retry-After`` when it asks for longer (bounded)."""
    headers = getattr(exc, "headers", None) or {}
    try:
        asked = float(headers.get("Retry-After") or 0)
    except (TypeError, ValueError):
        asked = 0.0
    return max(delay, min(asked, 10.0))


def plural_of(api_version: str, kind: str) -> str:
    try:
        return PLURALS[(api_version, kind)]
    except KeyError:
        return kind.lower() + "s"


async def _next_event(resp: Any) -> dict[str, Any] | None:
    """The next event of a watch (None: the server ended it); a cut-off, oversized or unreadable
    line is a failed watch (KubeError)."""
    try:
        line: bytes = await resp.content.readline(max_line_length=MAX_EVENT_BYTES)
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise ValueError("the watch ended in the middle of an event")
        event = json.loads(line)
        if not isinstance(event, dict):
            raise ValueError(f"a watch event is an object, not {type(event).__name__}")
    except ValueError as exc:
        raise KubeError(500, "InvalidWatchEvent", str(exc)[:200]) from None
    return event


class KubeClient:
    """Thin async wrapper over kubernetes-asyncio's ApiClient: JSON in, JSON out."""

    def __init__(self, api: k8s.ApiClient, field_manager: str = "klaxon-operator", retry: Retry = Retry()) -> None:
        self.api = api
        self.field_manager = field_manager
        self.retry = retry
        self.requests = 0
        #: the last call got no answer from the server (see _retrying)
        self.unreachable = False

    @classmethod
    async def connect(
        cls,
        configuration: k8s.Configuration | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        field_manager: str = "klaxon-operator",
    ) -> KubeClient:
        """From an explicit Configuration, an explicit kubeconfig, in-cluster, or the default kubeconfig."""
        if configuration is None:
            configuration = k8s.Configuration()
            if kubeconfig:
                await k8s_config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
            else:
                try:
                    k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                except k8s_config.ConfigException:
                    await k8s_config.load_kube_config(context=context, client_configuration=configuration)
        return cls(k8s.ApiClient(configuration=configuration), field_manager)

    async def close(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}

        async def attempt() -> Any:
            started = time.monotonic()
            code = "0"
            try:
                result = await self.api.call_api(
                    path,
                    method,
                    query_params=list((query or {}).items()),
                    header_params=headers,
                    body=body,
                    response_types_map={200: "object", 201: "object", 202: "object"},
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                    _request_timeout=ATTEMPT_TIMEOUT,
                )
                code = "2xx"
                return result
            except ApiException as exc:
                code = str(exc.status)
                raise
            finally:
                API_REQUESTS.labels(method, _resource_of(path), code).inc()
                API_LATENCY.labels(method).observe(time.monotonic() - started)

        return await self._retrying(method, path, attempt)

    async def _retrying(self, method: str, path: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, again while it fails transiently and ``self.retry`` allows; a failure
        is raised as KubeError.

        Once a call has spent its whole budget without reaching the server, later calls try once
        until the server answers again: a process that writes many objects in a row (an
        evaluator's status writes) must not wait out a budget for each of them.
        """
        started = time.monotonic()
        delays = self.retry.delays()
        while True:
            self.requests += 1
            try:
                result = await attempt()
            except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
                if isinstance(exc, ApiException):
                    self.unreachable = False  # it answered (a restarting server says 503 for a while)
                budget = 0.0 if self.unreachable else self.retry.budget
                pause = _retry_after(exc, next(delays))
                if not transient(exc, method) or time.monotonic() - started + pause > budget:
                    if isinstance(exc, ApiException):
                        raise KubeError.from_api(exc) from None
                    self.unreachable = True
                    raise transport_error(exc) from None
                API_RETRIES.labels(method, _resource_of(path)).inc()
                await asyncio.sleep(pause)
            else:
                self.unreachable = False
                return result

    async def get(self, ref: Ref) -> Body | None:
        try:
            result: Body = await self.request("GET", ref.path())
        except KubeError as exc:
            if exc.status == 404 and not exc.resource_missing:
                return None
            raise
        return result

    async def list(self, ref: Ref, label_selector: str | None = None) -> list[Body]:
        return (await self.list_with_version(ref, label_selector))[0]

    async def list_with_version(
        self, ref: Ref, label_selector: str | None = None, field_selector: str | None = None
    ) -> tuple[Items, str]:
        """The items of a collection and the list's resourceVersion (where a watch starts)."""
        query = {"labelSelector": label_selector} if label_selector else {}
        if field_selector:
            query["fieldSelector"] = field_selector
        result = await self.request("GET", ref.path(), query=query or None)
        items: Items = [*(result.get("items") or [])]
        return items, str((result.get("metadata") or {}).get("resourceVersion", ""))

    async def watch(
        self,
        ref: Ref,
        resource_version: str = "",
        field_selector: str | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[tuple[str, Body]]:
        """(type, object) of each change of a collection after ``resource_version``: ADDED, MODIFIED,
        DELETED and BOOKMARK (only its resourceVersion counts). ``field_selector`` (e.g.
        ``metadata.name=NAME``) narrows it, RBAC then checks a Role's resourceNames; so does
        ``label_selector``.

        Ends when the server ends the watch (after 5-10 minutes): resume from the last
        resourceVersion seen. An ERROR event (410 Gone: that version is too old) raises KubeError.
        """
        timeout = random.randint(*WATCH_TIMEOUT_S)
        query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout)}
        if resource_version:
            query["resourceVersion"] = resource_version
        if field_selector:
            query["fieldSelector"] = field_selector
        if label_selector:
            query["labelSelector"] = label_selector
        path = ref.path()
        resp = await self._open_watch(path, query, timeout)
        try:
            while (event := await _next_event(resp)) is not None:
                kind, obj = str(event.get("type", "")), event.get("object")
                if not isinstance(obj, dict):
                    continue
                if kind == "ERROR":  # a Status
                    code, reason = int(obj.get("code") or 500), str(obj.get("reason", ""))
                    raise KubeError(code, reason, str(obj.get("message", "")))
                yield kind, obj
        except (aiohttp.ClientError, TimeoutError) as exc:  # the stream broke (e.g. the server went away)
            raise transport_error(exc) from None
        finally:
            resp.close()

    async def _open_watch(self, path: str, query: Mapping[str, str], timeout: int) -> Any:
        """The streaming response of a watch, opened like any request (retried while transient)."""

        async def attempt() -> Any:
            resp = await self.api.call_api(
                path,
                "GET",
                query_params=list(query.items()),
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,  # the response as it streams
                _request_timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=timeout + 30),
            )
            API_REQUESTS.labels("WATCH", _resource_of(path), "2xx" if resp.status < 300 else str(resp.status)).inc()
            if resp.status < 300:
                return resp
            try:
                refused = ApiException(status=resp.status, reason=str(resp.reason or ""))
                refused.body = await resp.read()
                refused.headers = resp.headers
            finally:
                resp.close()
            raise refused

        return await self._retrying("GET", path, attempt)

    async def create(self, body: Body) -> Body:
        ref = Ref.of(body)
        collection = Ref(ref.api_version, ref.plural, ref.namespace)
        result: Body = await self.request(
            "POST", collection.path(), body=body, query={"fieldManager": self.field_manager}
        )
        return result

    async def merge_patch(self, ref: Ref, patch: Mapping[str, Any], subresource: str | None = None) -> Body:
        result: Body = await self.request(
            "PATCH",
            ref.path(subresource),
            body=dict(patch),
            query={"fieldManager": self.field_manager},
            content_type=MERGE_PATCH,
        )
        return result

    async def update_annotation(
        self, ref: Ref, key: str, update: Callable[[str | None], str], attempts: int = 5
    ) -> str:
        """Set annotation ``key`` to ``update(its current value)``: read-modify-write guarded by
        resourceVersion, read again and retried on conflict. Returns the value written."""
        for attempt in range(attempts):
            obj = await self.get(ref)
            if obj is None:
                raise KubeError(404, "NotFound", f"{ref.plural} {ref.namespace}/{ref.name} not found")
            meta = obj.get("metadata") or {}
            value = update((meta.get("annotations") or {}).get(key))
            patch = {"metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": {key: value}}}
            try:
                await self.merge_patch(ref, patch)
                return value
            except KubeError as exc:
                if exc.status != 409 or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    async def patch_status(self, ref: Ref, status: Mapping[str, Any]) -> Body:
        """Merge-patch ``status`` through the /status subresource (never the main object; lists
        such as activeSeries are replaced whole)."""
        return await self.merge_patch(ref, {"status": dict(status)}, subresource="status")

    async def delete(self, ref: Ref, uid: str | None = None) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:  # never delete a same-named successor
            body["preconditions"] = {"uid": uid}  # type: ignore[assignment]
        try:
            await self.request("DELETE", ref.path(), body=body)
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise


@asynccontextmanager
async def connected(
    kubeconfig: str | None = None, context: str | None = None, field_manager: str = "klaxon-operator"
) -> AsyncIterator[KubeClient]:
    """A KubeClient for the duration of a command (see ``KubeClient.connect``), closed afterwards."""
    kube = await KubeClient.connect(kubeconfig=kubeconfig, context=context, field_manager=field_manager)
    try:
        yield kube
    finally:
        await kube.close()
