"""A kmock-based Kubernetes API emulator that behaves closely enough for kopf.

kmock 0.8's :class:`kmock.KubernetesEmulator` is a JSON store over HTTP. Against
kopf 1.45 it breaks in several ways (verified in this harness's selftest):

* no ``metadata.resourceVersion/uid/generation/creationTimestamp``;
* a failed JSON-patch ``test`` op is a 500 instead of 422;
* ``/api/v1/namespaces`` cannot even be parsed (500 from the URL parser);
* label/field selectors are ignored;
* ``/status`` and the main endpoint write the same whole object;
* server-side apply (and strategic merge) are plain dict merges, YAML apply is ignored;
* ``PUT`` (replace) is a 404;
* watches snapshot first and subscribe later (events in between are lost),
  and ignore ``resourceVersion``/``timeoutSeconds``;
* every request is matched against every reaction by scanning the whole
  request history (quadratic), which makes long kopf runs slow.

:class:`EmulatedCluster` keeps kmock's public surface (``objects``, ``resources``,
``list(kmock)``, ``kmock[...] << reaction``) but replaces the request handling with
an in-memory API server that implements those semantics. Use
:func:`emulated_cluster` to run it on loopback.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import datetime
import json
import re
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import EllipsisType
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml
from kmock._internal import apps, rendering

from .selectors import Matcher, SelectorError, parse_field_selector, parse_label_selector

Body = dict[str, Any]
ObjKey = tuple[kmock.resource, str | None, str]

ALL_VERBS = frozenset({'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'})


@dataclasses.dataclass(frozen=True)
class ResourceSpec:
    """What the harness needs to know about a resource to serve & discover it."""
    gvr: str  # e.g. 'klaxon.dev/v1alpha1/alertrules' or 'v1/configmaps'
    kind: str
    namespaced: bool = True
    subresources: frozenset[str] = frozenset()
    shortnames: frozenset[str] = frozenset()


def _spec(gvr: str, kind: str, namespaced: bool = True, status: bool = False, *short: str) -> ResourceSpec:
    return ResourceSpec(gvr, kind, namespaced, frozenset({'status'} if status else ()), frozenset(short))


#: Everything Klaxon's operator and tests touch. Custom resources have a status subresource.
DEFAULT_RESOURCES: tuple[ResourceSpec, ...] = (
    _spec('v1/namespaces', 'Namespace', False, True, 'ns'),
    _spec('v1/secrets', 'Secret'),
    _spec('v1/events', 'Event', True, False, 'ev'),
    _spec('v1/serviceaccounts', 'ServiceAccount', True, False, 'sa'),
    _spec('v1/services', 'Service', True, True, 'svc'),
    _spec('v1/configmaps', 'ConfigMap', True, False, 'cm'),
    _spec('apps/v1/deployments', 'Deployment', True, True, 'deploy'),
    _spec('rbac.authorization.k8s.io/v1/roles', 'Role'),
    _spec('rbac.authorization.k8s.io/v1/rolebindings', 'RoleBinding'),
    _spec('rbac.authorization.k8s.io/v1/clusterroles', 'ClusterRole', False),
    _spec('rbac.authorization.k8s.io/v1/clusterrolebindings', 'ClusterRoleBinding', False),
    _spec('coordination.k8s.io/v1/leases', 'Lease'),
    _spec('apiextensions.k8s.io/v1/customresourcedefinitions', 'CustomResourceDefinition',
          False, True, 'crd'),
    _spec('monitoring.coreos.com/v1/prometheusrules', 'PrometheusRule', True, False, 'promrule'),
    _spec('klaxon.dev/v1alpha1/alertrules', 'AlertRule', True, True),
    _spec('klaxon.dev/v1alpha1/alertconfigs', 'AlertConfig', True, True),
    _spec('klaxon.dev/v1alpha1/notificationchannels', 'NotificationChannel', True, True),
)

# Fields the server owns: clients cannot change them via PATCH/PUT/apply.
_SERVER_OWNED_META = ('uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds',
                      'generation', 'resourceVersion', 'name', 'namespace', 'managedFields')
_NAMESPACES = kmock.resource('', 'v1', 'namespaces')
_CRDS = kmock.resource('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')
_NS_PATH_RE = re.compile(r'^/api/v1/namespaces(?:/([^/]+)(?:/(status|finalize))?)?/?$')


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _res(gvr: str | kmock.resource) -> kmock.resource:
    return gvr if isinstance(gvr, kmock.resource) else kmock.resource(gvr)


def _api_version(resource: kmock.resource) -> str:
    return f'{resource.group}/{resource.version}' if resource.group else str(resource.version)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``None`` deletes, dicts merge, everything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _leaf_paths(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Flatten a dict into {path: leaf}; lists are atomic leaves (SSA approximation)."""
    if isinstance(value, Mapping) and value:
        out: dict[tuple[str, ...], Any] = {}
        for key, sub in value.items():
            out.update(_leaf_paths(sub, (*prefix, str(key))))
        return out
    return {prefix: value}


def _remove_path(body: Body, path: tuple[str, ...]) -> None:
    node: Any = body
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        node = node[part]
    if isinstance(node, dict) and path:
        node.pop(path[-1], None)


def _essence(body: Mapping[str, Any]) -> dict[str, Any]:
    """What bumps ``metadata.generation``: everything but metadata & status."""
    return {k: v for k, v in body.items() if k not in ('metadata', 'status', 'apiVersion', 'kind')}


def _status_error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or {})


@dataclasses.dataclass
class LoggedRequest:
    """One HTTP request as the emulator saw it; for assertions on operator behaviour."""
    method: str
    path: str
    query: dict[str, str]
    body: Any
    content_type: str
    resource: str | None  # 'group/version/plural' or 'v1/plural'
    namespace: str | None
    name: str | None
    subresource: str | None
    status: int = 0
    injected: bool = False  # failed on purpose via EmulatedCluster.inject_error()
    #: Top-level fields whose value was really changed by this write (server-side diff).
    changed: frozenset[str] = frozenset()
    #: Who asked (tests tell clients apart by it, e.g. an evaluator beside a running operator).
    user_agent: str = ''

    @property
    def is_write(self) -> bool:
        return self.method in ('POST', 'PUT', 'PATCH', 'DELETE')

    def touches(self, field: str) -> bool:
        """Whether the request body *tries* to write a top-level field (e.g. 'spec')."""
        body = self.body
        if isinstance(body, list):  # JSON-patch
            return any(isinstance(op, Mapping) and str(op.get('path', '')).split('/')[1:2] == [field]
                       and op.get('op') != 'test' for op in body)
        return isinstance(body, Mapping) and field in body


@dataclasses.dataclass(eq=False)
class _Watch:
    resource: kmock.resource
    namespace: str | None
    name: str | None
    labels: Matcher
    fields: Matcher
    queue: asyncio.Queue[Body | None] = dataclasses.field(default_factory=asyncio.Queue)

    def matches(self, body: Mapping[str, Any] | None) -> bool:
        if body is None:
            return False
        meta = body.get('metadata') or {}
        return ((self.namespace is None or meta.get('namespace') == self.namespace)
                and (self.name is None or meta.get('name') == self.name)
                and self.labels(body) and self.fields(body))

    def translate(self, etype: str, new: Body, old: Body | None) -> Body | None:
        """Selector-aware event: objects moving in/out of the selection appear/vanish."""
        now_in, was_in = self.matches(new), self.matches(old)
        if etype == 'MODIFIED':
            etype = 'MODIFIED' if now_in and was_in else 'ADDED' if now_in else 'DELETED' if was_in else ''
        elif etype == 'DELETED':
            etype = 'DELETED' if now_in or was_in else ''
        elif not now_in:
            etype = ''
        return {'type': etype, 'object': copy.deepcopy(new)} if etype else None


@dataclasses.dataclass
class _Fault:
    method: str | None
    resource: kmock.resource | None
    subresource: str | None
    status: int
    remaining: int
    namespace: str | None = None
    message: str = 'injected by the test harness'


@attrs.define(kw_only=True)
class EmulatedCluster(kmock.KubernetesEmulator):
    """A stateful Kubernetes API for kopf operators; see the module docstring for why."""

    watch_timeout: float = 30.0  # server-side cap for watches without ``timeoutSeconds``
    event_log_size: int = 10_000  # how far back ``?watch&resourceVersion=N`` can resume

    log: list[LoggedRequest] = attrs.field(factory=list, init=False)
    server_errors: list[BaseException] = attrs.field(factory=list, init=False)
    _rv: int = attrs.field(default=1000, init=False)
    _hidden: set[kmock.resource] = attrs.field(factory=set, init=False)
    _watchers: list[_Watch] = attrs.field(factory=list, init=False)
    _events: deque[tuple[int, kmock.resource, str, Body, Body | None]] = attrs.field(init=False)
    _events_floor: int = attrs.field(default=1000, init=False)
    _applied: dict[tuple[ObjKey, str, str | None], Body] = attrs.field(factory=dict, init=False)
    _results: dict[int, Any] = attrs.field(factory=dict, init=False)
    _faults: list[_Fault] = attrs.field(factory=list, init=False)
    _builtin_payloads: int = attrs.field(default=0, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._events = deque(maxlen=self.event_log_size)
        self._builtin_payloads = len(self._payloads)
        for spec in DEFAULT_RESOURCES:
            self.register(spec)

    # ----------------------------------------------------------------- registry
    def register(self, spec: ResourceSpec) -> None:
        """Declare a resource for discovery and serving (idempotent)."""
        self.resources[spec.gvr] = kmock.ResourceInfo(
            namespaced=spec.namespaced, kind=spec.kind, singular=spec.kind.lower(),
            verbs=set(ALL_VERBS), shortnames=set(spec.shortnames), subresources=set(spec.subresources))
        self._hidden.discard(_res(spec.gvr))

    def uninstall(self, gvr: str) -> None:
        """Make a resource absent (CRD not installed): 404 everywhere, hidden from discovery."""
        self._hidden.add(_res(gvr))

    def install(self, gvr: str) -> None:
        """Undo :meth:`uninstall`."""
        self._hidden.discard(_res(gvr))

    def _known(self, resource: kmock.resource) -> bool:
        return resource in self.resources and resource not in self._hidden

    def _get_resources(self) -> list[kmock.resource]:
        return [r for r in self.resources if r not in self._hidden]

    def _info(self, resource: kmock.resource) -> kmock.ResourceInfo:
        return self.resources[resource]

    def inject_error(self, status: int, *, method: str | None = None, resource: str | None = None,
                     subresource: str | None = None, times: int = 1, namespace: str | None = None,
                     message: str = 'injected by the test harness') -> None:
        """Fail the next ``times`` matching requests with ``status`` (and ``message``) before touching state."""
        self._faults.append(_Fault(method.upper() if method else None, _res(resource) if resource else None,
                                   subresource, status, times, namespace, message))

    def clear_faults(self) -> None:
        """Forget every injected fault not yet used up."""
        self._faults.clear()

    # --------------------------------------------------------------- HTTP entry
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Replaces kmock's entry point: own URL parsing, logging, and error mapping."""
        await raw_request.read()
        entry: LoggedRequest | None = None
        try:
            request = await self._parse_request(raw_request)
            self._requests.append(request)
            entry = self._log_entry(request, raw_request)
            self.log.append(entry)
            response = await self._dispatch(request, entry)
            entry.status = response.status
            return response
        except kmock.KubernetesError as e:
            if entry is not None:
                entry.status = e.status
                entry.injected = e.reason == 'InjectedFault'
            if e.status >= 500 and not (entry is not None and entry.injected):
                self.server_errors.append(e)
            return self._error_response(e.status, e.reason or 'Error', e.message or '', e.details)
        except Exception as e:  # a bug in the harness or in a user reaction: make it loud
            if entry is not None:
                entry.status = 500
            self.server_errors.append(e)
            if self._errors:
                self._errors[-1].append(e)
            return self._error_response(500, type(e).__name__, repr(e), None)

    @staticmethod
    def _error_response(status: int, reason: str, message: str, details: Any) -> aiohttp.web.Response:
        return aiohttp.web.json_response({
            'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Failure',
            'code': status, 'reason': reason, 'message': message, 'details': details or {},
        }, status=status)

    async def _parse_request(self, raw: aiohttp.web.BaseRequest) -> rendering.Request:
        match = _NS_PATH_RE.match(raw.path)
        if match is None:
            request = await rendering.Request._parse(raw, id=len(self._requests))
        else:  # kmock's parser crashes on /api/v1/namespaces[/name]: build the request ourselves
            body = await raw.read()
            try:
                data = json.loads(body) if body else None
            except ValueError:
                data = None
            name, sub = match.group(1), match.group(2)
            method = raw.method.upper()
            action = (kmock.action.WATCH if method == 'GET' and raw.query.get('watch') == 'true' else
                      kmock.action.LIST if method == 'GET' and name is None else
                      kmock.action.FETCH if method == 'GET' else
                      kmock.action.CREATE if method == 'POST' else
                      kmock.action.UPDATE if method == 'PATCH' else
                      kmock.action.DELETE if method == 'DELETE' else None)
            request = rendering.Request(
                id=len(self._requests), raw_request=raw, url=raw.url, method=raw.method,
                params=dict(raw.query), headers=dict(raw.headers), cookies=dict(raw.cookies),
                body=body, text=body.decode('utf-8', 'replace'), data=data, action=action,
                resource=_NAMESPACES, namespace=None, name=name, subresource=sub)
        if request.method == kmock.method.PUT and request.name is not None:
            request = attrs.evolve(request, action=kmock.action.UPDATE)
        return request

    def _log_entry(self, request: rendering.Request, raw: aiohttp.web.BaseRequest) -> LoggedRequest:
        res = request.resource
        gvr = None if res is None or res.plural is None else f'{_api_version(res)}/{res.plural}'
        return LoggedRequest(
            method=raw.method.upper(), path=raw.path, query=dict(raw.query),
            body=self._request_body(request), content_type=raw.content_type,
            resource=gvr, namespace=request.namespace, name=request.name, subresource=request.subresource,
            user_agent=raw.headers.get('User-Agent', ''))

    @staticmethod
    def _request_body(request: rendering.Request) -> Any:
        if request.data is not None:
            return request.data
        if request.body and 'yaml' in request.headers.get('Content-Type', ''):
            with contextlib.suppress(yaml.YAMLError):
                return yaml.safe_load(request.body)
        return request.text or None

    async def _dispatch(self, request: rendering.Request, entry: LoggedRequest) -> aiohttp.web.StreamResponse:
        res = request.resource
        is_resource = res is not None and res.plural is not None
        if is_resource:
            assert res is not None
            self._apply_faults(request)
            if not self._known(res):
                raise _status_error(404, 'NotFound', 'the server could not find the requested resource')
            if request.action not in (kmock.action.LIST, kmock.action.WATCH, kmock.action.FETCH):
                self._results[request.id] = self._mutate(request, entry)

        # User reactions (``kmock[...] << ...``) keep kmock's semantics, at kmock's (quadratic) cost.
        # Without them, route directly: a kopf run makes hundreds of requests.
        if len(self._payloads) != self._builtin_payloads or not is_resource:
            try:
                return await apps.RawHandler._handle(self, request)
            finally:
                self._results.pop(request.id, None)
        if request.action == kmock.action.WATCH:
            entry.status = 200
            return await self._stream(request, self._serve_watch(request))
        if request.action == kmock.action.LIST:
            return aiohttp.web.json_response(await self._serve_list(request))
        if request.action == kmock.action.FETCH:
            return aiohttp.web.json_response(await self._serve_fetch(request))
        status = 201 if request.action == kmock.action.CREATE else 200
        return aiohttp.web.json_response(self._results.pop(request.id), status=status)

    def _apply_faults(self, request: rendering.Request) -> None:
        for fault in self._faults:
            if (fault.remaining > 0
                    and (fault.method is None or fault.method == request.method.value)
                    and (fault.resource is None or fault.resource == request.resource)
                    and (fault.subresource is None or fault.subresource == request.subresource)
                    and (fault.namespace is None or fault.namespace == request.namespace)):
                fault.remaining -= 1
                raise _status_error(fault.status, 'InjectedFault', fault.message)

    async def _stream(self, request: rendering.Request,
                      events: AsyncIterator[Any]) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = 'application/json'
        await response.prepare(raw)
        try:
            async for event in events:
                if event == b'':
                    continue
                await response.write(json.dumps(event).encode() + b'\n')
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        with contextlib.suppress(Exception):
            await response.write_eof()
        return response

    # ------------------------------------------------- kmock fallbacks (serving)
    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        res = request.resource
        assert res is not None
        labels, fields = self._selectors(request)
        items = [copy.deepcopy(o) for o in self._iter_objects(res, request.namespace)
                 if labels(o) and fields(o)]
        kind = self._info(res).kind or ''
        return {'apiVersion': _api_version(res), 'kind': f'{kind}List',
                'metadata': {'resourceVersion': str(self._rv), 'continue': ''}, 'items': items}

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None and request.name is not None
        return copy.deepcopy(self._require(request.resource, request.namespace, request.name))

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        return self._results.get(request.id)

    _serve_update = _serve_create
    _serve_delete = _serve_create

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        """Subscribe atomically with the snapshot/replay, so no event is ever lost."""
        res = request.resource
        assert res is not None
        labels, fields = self._selectors(request)
        params = request.params
        watch = _Watch(res, request.namespace, request.name, labels, fields)
        since = params.get('resourceVersion') or '0'
        initial: list[Body] = []
        if since == '0' or params.get('sendInitialEvents') == 'true':
            initial = [{'type': 'ADDED', 'object': copy.deepcopy(o)}
                       for o in self._iter_objects(res, request.namespace) if watch.matches(o)]
            if params.get('sendInitialEvents') == 'true':
                initial.append({'type': 'BOOKMARK', 'object': {
                    'kind': self._info(res).kind, 'apiVersion': _api_version(res),
                    'metadata': {'resourceVersion': str(self._rv),
                                 'annotations': {'k8s.io/initial-events-end': 'true'}}}})
        elif not since.isdigit() or int(since) < self._events_floor:
            yield b''
            yield {'type': 'ERROR', 'object': {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure',
                                               'code': 410, 'reason': 'Expired',
                                               'message': f'too old resource version: {since}'}}
            return
        else:
            for rv, eres, etype, new, old in self._events:
                if rv > int(since) and eres == res and (event := watch.translate(etype, new, old)):
                    initial.append(event)
        self._watchers.append(watch)  # no await since the snapshot: atomic in asyncio
        try:
            yield b''  # let kmock/aiohttp send the headers
            for event in initial:
                yield event
            loop = asyncio.get_running_loop()
            timeout = float(params.get('timeoutSeconds') or self.watch_timeout)
            deadline = loop.time() + min(timeout, self.watch_timeout)
            raw = request._raw_request
            while not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(watch.queue.get(), timeout=min(0.5, remaining))
                except TimeoutError:
                    transport = raw.transport if raw is not None else None
                    if transport is None or transport.is_closing():
                        break  # the client is gone
                    continue
                if item is None:
                    break
                yield item
        finally:
            with contextlib.suppress(ValueError):
                self._watchers.remove(watch)

    def _selectors(self, request: rendering.Request) -> tuple[Matcher, Matcher]:
        try:
            return (parse_label_selector(request.params.get('labelSelector')),
                    parse_field_selector(request.params.get('fieldSelector')))
        except SelectorError as e:
            raise _status_error(400, 'BadRequest', str(e)) from None

    # ---------------------------------------------------------------- storage
    def _iter_objects(self, res: kmock.resource, namespace: str | None) -> list[Body]:
        found = [(ns or '', name, obj.raw) for (r, ns, name), obj in self._objects.items()
                 if r == res and not obj.deleted and (namespace is None or ns == namespace)]
        return [body for _, _, body in sorted(found, key=lambda t: (t[0], t[1]))]

    def _lookup(self, res: kmock.resource, namespace: str | None, name: str) -> Body | None:
        key = (res, namespace if self._info(res).namespaced else None, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return self._objects[key].raw

    def _require(self, res: kmock.resource, namespace: str | None, name: str) -> Body:
        body = self._lookup(res, namespace, name)
        if body is None:
            raise _status_error(404, 'NotFound', f'{res.plural} "{name}" not found',
                                name=name, kind=res.plural)
        return body

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _publish(self, res: kmock.resource, etype: str, new: Body, old: Body | None) -> None:
        if len(self._events) == self._events.maxlen:
            self._events_floor = self._events[0][0]
        self._events.append((self._rv, res, etype, copy.deepcopy(new), copy.deepcopy(old)))
        for watch in self._watchers:
            if watch.resource == res and (event := watch.translate(etype, new, old)):
                watch.queue.put_nowait(event)

    def _store(self, key: ObjKey, body: Body) -> None:
        if key in self._objects:
            self._objects[key].history.append(copy.deepcopy(body))
        else:
            self._objects[key] = copy.deepcopy(body)

    # --------------------------------------------------------------- mutations
    def _mutate(self, request: rendering.Request, entry: LoggedRequest) -> Body:
        res = request.resource
        assert res is not None
        method = request.method.value
        manager = request.params.get('fieldManager') or request.headers.get('User-Agent', 'unknown')
        if method == 'POST' and request.name is None:
            body = entry.body
            if not isinstance(body, Mapping):
                raise _status_error(400, 'BadRequest', 'the body of a create must be a JSON object')
            return self.create_object(res, body, namespace=request.namespace, _entry=entry)
        if request.name is None:
            raise _status_error(405, 'MethodNotAllowed', f'{method} on a collection is not supported')
        if method == 'DELETE':
            return self.delete_object(res, request.name, namespace=request.namespace)
        if method == 'PUT':
            if not isinstance(entry.body, Mapping):
                raise _status_error(400, 'BadRequest', 'the body of a replace must be a JSON object')
            return self._update(res, request.namespace, request.name, request.subresource,
                                lambda old: self._replace(old, entry.body), entry=entry)
        if method == 'PATCH':
            ctype = request.headers.get('Content-Type', '').split(';')[0].strip()
            if ctype == 'application/apply-patch+yaml':
                return self._server_side_apply(request, entry, manager)
            if ctype == 'application/json-patch+json':
                if not isinstance(entry.body, list):
                    raise _status_error(400, 'BadRequest', 'a JSON-patch must be a list of operations')
                return self._update(res, request.namespace, request.name, request.subresource,
                                    lambda old: self._json_patch(old, entry.body), entry=entry)
            if ctype in ('application/merge-patch+json', 'application/strategic-merge-patch+json'):
                if not isinstance(entry.body, Mapping):
                    raise _status_error(400, 'BadRequest', 'a merge-patch must be a JSON object')
                return self._update(res, request.namespace, request.name, request.subresource,
                                    lambda old: self._merge(old, entry.body), entry=entry)
            raise _status_error(415, 'UnsupportedMediaType', f'unsupported patch type: {ctype!r}')
        raise _status_error(405, 'MethodNotAllowed', f'{method} is not supported')

    @staticmethod
    def _check_precondition(old: Body, given: Mapping[str, Any]) -> None:
        rv = (given.get('metadata') or {}).get('resourceVersion')
        if rv and rv != old['metadata']['resourceVersion']:
            raise _status_error(409, 'Conflict', 'the object has been modified; please apply your '
                                'changes to the latest version and try again')

    def _replace(self, old: Body, body: Mapping[str, Any]) -> Body:
        self._check_precondition(old, body)
        return copy.deepcopy(dict(body))

    def _merge(self, old: Body, patch: Mapping[str, Any]) -> Body:
        self._check_precondition(old, patch)
        return merge_patch(old, patch)

    @staticmethod
    def _json_patch(old: Body, ops: list[Any]) -> Body:
        try:
            return jsonpatch.apply_patch(old, ops, in_place=False)
        except jsonpatch.JsonPatchTestFailed as e:
            raise _status_error(422, 'Invalid', f'the server rejected our request due to an error '
                                f'in our request: testing value failed: {e}') from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
            raise _status_error(422, 'Invalid', f'invalid JSON-patch: {e}') from None

    def create_object(self, resource: str | kmock.resource, body: Mapping[str, Any],
                      namespace: str | None = None, *, keep_status: bool = False,
                      _entry: LoggedRequest | None = None) -> Body:
        """Create as the API would: server fields set, 409 on duplicates, ADDED event.

        ``keep_status=True`` is for seeding test fixtures: the API drops ``status``
        on create for resources with a status subresource.
        """
        res = _res(resource)
        info = self._info(res)
        obj: Body = copy.deepcopy(dict(body))
        meta = obj.setdefault('metadata', {})
        if not meta.get('name'):
            if not meta.get('generateName'):
                raise _status_error(422, 'Invalid', 'metadata.name or metadata.generateName is required')
            meta['name'] = meta['generateName'] + secrets.token_hex(3)[:5]
        ns = (namespace or meta.get('namespace')) if info.namespaced else None
        if info.namespaced and not ns:
            raise _status_error(400, 'BadRequest', 'a namespace is required for namespaced resources')
        if namespace and meta.get('namespace') and meta['namespace'] != namespace:
            raise _status_error(400, 'BadRequest', 'the namespace of the body does not match the URL')
        key: ObjKey = (res, ns, meta['name'])
        if self._lookup(res, ns, meta['name']) is not None:
            raise _status_error(409, 'AlreadyExists', f'{res.plural} "{meta["name"]}" already exists',
                                name=meta['name'], kind=res.plural)
        for field in _SERVER_OWNED_META:
            meta.pop(field, None)
        meta['name'] = key[2]
        if ns is not None:
            meta['namespace'] = ns
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1,
                    resourceVersion=self._next_rv())
        obj.setdefault('apiVersion', _api_version(res))
        obj.setdefault('kind', info.kind)
        if 'status' in info.subresources and not keep_status:
            obj.pop('status', None)
        if res == _NAMESPACES:
            obj['status'] = {'phase': 'Active'}
        self._store(key, obj)
        self._publish(res, 'ADDED', obj, None)
        if res == _CRDS:
            self._register_crd(obj)
        if _entry is not None:
            _entry.changed = frozenset(obj)
        return copy.deepcopy(obj)

    def _update(self, res: kmock.resource, namespace: str | None, name: str, subresource: str | None,
                change: Callable[[Body], Body], *, entry: LoggedRequest | None = None) -> Body:
        info = self._info(res)
        if subresource not in (None, *info.subresources):
            raise _status_error(404, 'NotFound', f'subresource {subresource!r} is not served')
        ns = namespace if info.namespaced else None
        old = self._require(res, ns, name)
        new = change(copy.deepcopy(old))
        if not isinstance(new, dict):
            raise _status_error(422, 'Invalid', 'the patched object is not an object')
        has_status = 'status' in info.subresources
        if subresource == 'status':  # only .status can change via /status
            status = new.get('status')
            new = copy.deepcopy(old)
            new.pop('status', None)
            if status is not None:
                new['status'] = status
        elif has_status:  # and .status cannot change via the main endpoint
            new.pop('status', None)
            if 'status' in old:
                new['status'] = copy.deepcopy(old['status'])
        new_meta = new.setdefault('metadata', {})
        old_meta = old['metadata']
        for field in _SERVER_OWNED_META:
            new_meta.pop(field, None)
            if field in old_meta:
                new_meta[field] = old_meta[field]
        new['apiVersion'], new['kind'] = old.get('apiVersion'), old.get('kind')
        if old_meta.get('deletionTimestamp'):
            added = set(new_meta.get('finalizers') or []) - set(old_meta.get('finalizers') or [])
            if added:
                raise _status_error(422, 'Invalid', f'no new finalizers can be added if the object '
                                    f'is being deleted, found new finalizers {sorted(added)}')
        if not new_meta.get('finalizers'):
            new_meta.pop('finalizers', None)
        if new == old:  # a no-op write does not bump resourceVersion, as in the real API
            return copy.deepcopy(old)
        if _essence(new) != _essence(old):
            new_meta['generation'] = int(old_meta.get('generation', 1)) + 1
        new_meta['resourceVersion'] = self._next_rv()
        if entry is not None:
            changed = {k for k in set(old) | set(new) if k != 'metadata' and old.get(k) != new.get(k)}
            if _strip_rv(old_meta) != _strip_rv(new_meta):
                changed.add('metadata')
            entry.changed = frozenset(changed)
        key: ObjKey = (res, ns, name)
        self._store(key, new)
        self._publish(res, 'MODIFIED', new, old)
        if new_meta.get('deletionTimestamp') and not new_meta.get('finalizers'):
            self._hard_delete(key, new)
        return copy.deepcopy(new)

    def _server_side_apply(self, request: rendering.Request, entry: LoggedRequest, manager: str) -> Body:
        """Approximate SSA: per-manager field ownership at leaf level, lists atomic.

        Fields this manager applied before and omits now are removed; fields owned
        by another applier with a different value conflict (409) unless ``force=true``.
        """
        res = request.resource
        assert res is not None and request.name is not None
        applied = entry.body
        if not isinstance(applied, Mapping):
            raise _status_error(400, 'BadRequest', 'an apply patch must be an object (YAML or JSON)')
        if 'fieldManager' not in request.params:
            raise _status_error(422, 'Invalid', 'fieldManager is required for apply patch')
        info = self._info(res)
        ns = request.namespace if info.namespaced else None
        applied = copy.deepcopy(dict(applied))
        for field in _SERVER_OWNED_META:
            (applied.get('metadata') or {}).pop(field, None)
        key: ObjKey = (res, ns, request.name)
        sub = request.subresource
        if self._lookup(res, ns, request.name) is None:
            if sub is not None:
                raise self._not_found(res, request.name)
            body = merge_patch({'metadata': {'name': request.name}}, applied)
            created = self.create_object(res, body, namespace=ns, _entry=entry)
            self._applied[(key, manager, sub)] = applied
            return created
        force = request.params.get('force') == 'true'
        new_leaves = _leaf_paths(applied)
        for (okey, other, osub), config in self._applied.items():
            if okey != key or other == manager or osub != sub:
                continue
            for path, value in _leaf_paths(config).items():
                conflicting = path in new_leaves and new_leaves[path] != value
                if conflicting and path[:1] != ('metadata',) and not force:
                    raise _status_error(409, 'Conflict', f'Apply failed with 1 conflict: conflict with '
                                        f'"{other}": .{".".join(path)}', causes=[{'field': '.'.join(path)}])
        previous = self._applied.get((key, manager, sub), {})
        stale = set(_leaf_paths(previous)) - set(new_leaves)

        def change(old: Body) -> Body:
            for path in stale:
                _remove_path(old, path)
            return merge_patch(old, applied)
        result = self._update(res, ns, request.name, sub, change, entry=entry)
        self._applied[(key, manager, sub)] = applied
        return result

    @staticmethod
    def _not_found(res: kmock.resource, name: str) -> kmock.KubernetesError:
        return _status_error(404, 'NotFound', f'{res.plural} "{name}" not found', name=name, kind=res.plural)

    def delete_object(self, resource: str | kmock.resource, name: str, namespace: str | None = None) -> Body:
        """Delete as the API would: finalizers defer it via deletionTimestamp; dependents are GC'd."""
        res = _res(resource)
        ns = namespace if self._info(res).namespaced else None
        old = self._require(res, ns, name)
        key: ObjKey = (res, ns, name)
        if old['metadata'].get('finalizers'):
            if old['metadata'].get('deletionTimestamp'):
                return copy.deepcopy(old)
            new = copy.deepcopy(old)
            new['metadata'].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0,
                                   resourceVersion=self._next_rv())
            self._store(key, new)
            self._publish(res, 'MODIFIED', new, old)
            return copy.deepcopy(new)
        self._next_rv()
        final = copy.deepcopy(old)
        final['metadata']['resourceVersion'] = str(self._rv)
        self._hard_delete(key, final)
        return final

    def _hard_delete(self, key: ObjKey, final: Body) -> None:
        res = key[0]
        self._objects[key].delete()
        self._applied = {k: v for k, v in self._applied.items() if k[0] != key}
        self._publish(res, 'DELETED', final, None)
        if res == _CRDS:
            self._unregister_crd(final)
        self._collect_garbage(final['metadata']['uid'])

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background cascading deletion of dependents whose every owner is gone."""
        live_uids = {obj.raw['metadata'].get('uid') for obj in self._objects.values() if not obj.deleted}
        for (res, ns, name), obj in list(self._objects.items()):
            if obj.deleted:
                continue
            refs = obj.raw['metadata'].get('ownerReferences') or []
            if any(ref.get('uid') == owner_uid for ref in refs) and \
                    not any(ref.get('uid') in live_uids for ref in refs):
                self.delete_object(res, name, namespace=ns)

    def _register_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get('spec') or {}
        names = spec.get('names') or {}
        for version in spec.get('versions') or []:
            if version.get('served', True):
                subs = frozenset((version.get('subresources') or {}).keys())
                self.register(ResourceSpec(f"{spec.get('group')}/{version.get('name')}/{names.get('plural')}",
                                           names.get('kind', ''), spec.get('scope') != 'Cluster', subs,
                                           frozenset(names.get('shortNames') or ())))

    def _unregister_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get('spec') or {}
        for version in spec.get('versions') or []:
            plural = (spec.get('names') or {}).get('plural')
            self.uninstall(f"{spec.get('group')}/{version.get('name')}/{plural}")

    # ----------------------------------------------------- in-process helpers
    def get_object(self, resource: str, name: str, namespace: str | None = None) -> Body | None:
        """Current state of an object (a copy), or None; not logged as a request."""
        body = self._lookup(_res(resource), namespace, name)
        return copy.deepcopy(body) if body is not None else None

    def list_objects(self, resource: str, namespace: str | None = None,
                     label_selector: str | None = None) -> list[Body]:
        """Current objects of a resource, optionally filtered; not logged as a request."""
        match = parse_label_selector(label_selector)
        return [copy.deepcopy(o) for o in self._iter_objects(_res(resource), namespace) if match(o)]

    def patch_object(self, resource: str, name: str, patch: Mapping[str, Any], namespace: str | None = None,
                     *, subresource: str | None = None) -> Body:
        """Merge-patch an object as a client would (generation/resourceVersion bump, events)."""
        res = _res(resource)
        return self._update(res, namespace, name, subresource, lambda old: self._merge(old, patch))

    def history(self, resource: str, name: str, namespace: str | None = None) -> list[Body | None]:
        """All stored versions of an object (``None`` marks a deletion)."""
        res = _res(resource)
        key = (res, namespace if self._info(res).namespaced else None, name)
        if key not in self._objects:
            return []
        return [None if v is None else copy.deepcopy(v.raw) for v in self._objects[key].history]

    def requests(self, method: str | None = None, resource: str | None = None, *,
                 name: str | None = None, subresource: str | EllipsisType | None = ...,
                 writes_only: bool = False) -> list[LoggedRequest]:
        """The request log, filtered. ``subresource=...`` (default) means any; ``None``: main object only."""
        return [r for r in self.log
                if (method is None or r.method == method.upper())
                and (resource is None or r.resource == resource)
                and (name is None or r.name == name)
                and (subresource is Ellipsis or r.subresource == subresource)
                and (not writes_only or r.is_write)]

    def errors_5xx(self) -> list[LoggedRequest]:
        """Requests answered with a server error (not injected): none in a healthy test."""
        return [r for r in self.log if r.status >= 500 and not r.injected]

    async def close_watches(self) -> None:
        """End all open watch streams now (so the HTTP server can shut down quickly)."""
        self._closing = True
        for watch in list(self._watchers):
            watch.queue.put_nowait(None)
        await asyncio.sleep(0)

    @property
    def resource_version(self) -> int:
        return self._rv


def _strip_rv(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k != 'resourceVersion' and k != 'generation'}


@contextlib.asynccontextmanager
async def emulated_cluster(*, resources: Iterable[ResourceSpec] = (),
                           missing: Iterable[str] = (), **kwargs: Any) -> AsyncIterator[EmulatedCluster]:
    """Run :class:`EmulatedCluster` on a random loopback port for the duration of the block."""
    cluster = EmulatedCluster(**kwargs)
    for spec in resources:
        cluster.register(spec)
    for gvr in missing:
        cluster.uninstall(gvr)
    async with cluster, kmock.Server(cluster, host='127.0.0.1'):
        try:
            yield cluster
        finally:
            await cluster.close_watches()
