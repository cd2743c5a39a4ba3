"""Run a real kopf operator in-process, in the test's event loop, against the emulator.

In-process (``kopf.operator()`` in an asyncio task) rather than ``KopfRunner``
(a thread with its own loop): handlers, the emulator and the test share one loop,
so test code can inspect state without thread-safety concerns, and a stop/start
cycle takes milliseconds.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import signal
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

import kopf
from kopf._cogs.structs import credentials

from .emulator import EmulatedCluster

T = TypeVar('T')
logger = logging.getLogger(__name__)

#: The prefix Klaxon uses for kopf's progress and diff-base annotations.
ANNOTATIONS_PREFIX = 'klaxon.dev'


def connection_info(cluster: EmulatedCluster) -> kopf.ConnectionInfo:
    """Credentials for kopf pointing at the emulator (plain HTTP on loopback)."""
    return kopf.ConnectionInfo(server=str(cluster.url).rstrip('/'), default_namespace='default',
                               priority=1_000_000)


def login_handler(cluster: EmulatedCluster) -> Callable[..., kopf.ConnectionInfo]:
    """A ``@kopf.on.login`` handler for registries that must authenticate the usual way."""
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(cluster)
    return login


def harness_settings(**overrides: Any) -> kopf.OperatorSettings:
    """Settings that make kopf fast & deterministic against the emulator.

    Standalone (no peering objects), Klaxon's annotation storages, short watch
    timeouts and backoffs, events posted. ``overrides`` are ``'section.field'``
    keys, e.g. ``harness_settings(**{'posting.level': logging.DEBUG})``.
    """
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATIONS_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=ANNOTATIONS_PREFIX)
    settings.persistence.consistency_timeout = 2.0
    settings.posting.enabled = True
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 10
    settings.watching.client_timeout = 15
    settings.watching.connect_timeout = 2
    settings.watching.reconnect_backoff = 0.05
    settings.watching.inactivity_timeout = 30
    settings.networking.request_timeout = 10
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    settings.queueing.idle_timeout = 1.0
    settings.queueing.exit_timeout = 1.0
    settings.queueing.error_delays = [0.1, 0.2, 0.5, 1.0]
    settings.execution.default_backoff = 0.2
    settings.background.cancellation_polling = 1
    settings.background.instant_exit_timeout = 0.5
    settings.process.ultimate_exiting_timeout = None  # never SIGKILL the pytest process
    for path, value in overrides.items():
        section, field = path.split('.', 1)
        setattr(getattr(settings, section), field, value)
    return settings


class RunnerFactory(Protocol):
    """The ``kopf_runner`` fixture: ``kopf_runner(registry, namespaces=['ns1'])``."""

    def __call__(self, registry: kopf.OperatorRegistry, **kwargs: Any) -> OperatorRunner: ...


class OperatorRunner:
    """One kopf operator in an asyncio task; stoppable and restartable.

    A restart creates fresh in-memory state (memories, indexers, vault) like a
    new pod, so anything that survives must have been persisted in the cluster.
    """

    def __init__(self, cluster: EmulatedCluster, registry: kopf.OperatorRegistry, *,
                 settings: kopf.OperatorSettings | None = None,
                 namespaces: Collection[str] = (), clusterwide: bool | None = None,
                 memo: object | None = None, startup_timeout: float = 10.0) -> None:
        self.cluster = cluster
        self.registry = registry
        self.settings = settings if settings is not None else harness_settings()
        self.namespaces = tuple(namespaces)
        self.clusterwide = (not self.namespaces) if clusterwide is None else clusterwide
        self.memo = memo
        self.startup_timeout = startup_timeout
        self.task: asyncio.Task[None] | None = None
        self.starts = 0
        self._stop_flag: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def start(self) -> None:
        """Start the operator and wait until its startup handlers are done."""
        if self.running:
            raise RuntimeError("The operator is already running.")
        vault = credentials.Vault()
        await vault.populate({'kube-harness': connection_info(self.cluster)})
        self._stop_flag = asyncio.Event()
        ready_flag = asyncio.Event()
        owned = _OwnedTasks()
        context = contextvars.copy_context()
        context.run(_OWNER.set, owned)
        _install_task_factory()
        self.task = asyncio.create_task(self._operate(owned, vault, ready_flag),
                                        name=f'kopf-operator-{self.starts}', context=context)
        self.starts += 1
        ready = asyncio.create_task(ready_flag.wait())
        try:
            await asyncio.wait({ready, self.task}, timeout=self.startup_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self.task.done():
            self.task.result()  # re-raise the startup failure
            raise RuntimeError("The operator exited during startup.")
        if not ready_flag.is_set():
            await self.stop()
            raise TimeoutError(f"The operator did not get ready in {self.startup_timeout}s.")

    async def _operate(self, owned: _OwnedTasks, vault: credentials.Vault, ready_flag: asyncio.Event) -> None:
        """``kopf.operator()``, but only cancelling the tasks this operator spawned at exit.

        kopf treats every task created after its start as its own and cancels it
        on exit — in a test loop that includes pytest's fixture teardown and the
        emulator's HTTP handlers.
        """
        tasks = await kopf.spawn_tasks(
            registry=self.registry, settings=self.settings, vault=vault, memo=self.memo,
            clusterwide=self.clusterwide, namespaces=self.namespaces, standalone=True,
            stop_flag=self._stop_flag, ready_flag=ready_flag)
        await kopf.run_tasks(tasks, ignored=owned)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (as on SIGTERM), then cancel if it hangs; re-raise its crash."""
        task, self.task = self.task, None
        if task is None:
            return
        if self._stop_flag is not None:
            self._stop_flag.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            _restore_signal_handlers()

    async def restart(self) -> None:
        """Stop and start again: the in-memory state is lost, the cluster state is not."""
        await self.stop()
        await self.start()


class _OwnedTasks(Collection[asyncio.Task[Any]]):
    """The complement of one operator run's tasks, as kopf's ``ignored=`` wants it."""

    def __init__(self) -> None:
        self.owned: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def __contains__(self, task: object) -> bool:
        return task not in self.owned

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(())

    def __len__(self) -> int:
        return 0


_OWNER: contextvars.ContextVar[_OwnedTasks | None] = contextvars.ContextVar('kube_harness_owner',
                                                                            default=None)


def _install_task_factory() -> None:
    """Tag every task created (transitively) from an operator's context as that operator's."""
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    if getattr(previous, '_kube_harness', False):
        return

    def factory(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
                **kwargs: Any) -> asyncio.Task[Any]:
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        context = kwargs.get('context')
        owner = context.get(_OWNER) if context is not None else _OWNER.get()
        if owner is not None:
            owner.owned.add(task)
        return task  # type: ignore[return-value]

    factory._kube_harness = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)  # type: ignore[arg-type]


def _restore_signal_handlers() -> None:
    """kopf installs SIGINT/SIGTERM handlers on the loop; give Ctrl+C back to pytest."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def running_operator(cluster: EmulatedCluster, registry: kopf.OperatorRegistry,
                           **kwargs: Any) -> AsyncIterator[OperatorRunner]:
    """``async with running_operator(cluster, registry) as op:`` — started & ready inside."""
    runner = OperatorRunner(cluster, registry, **kwargs)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def wait_for(predicate: Callable[[], T | Awaitable[T]], timeout: float = 5.0,
                   interval: float = 0.05, message: str | Callable[[], str] = '') -> T:
    """Poll until ``predicate()`` (sync or async) is truthy; return it, or fail with context.

    Polling beats sleeping: the tests are as fast as the operator, and a
    timeout names what was awaited instead of failing an assert later.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = predicate()
        last = await result if isinstance(result, Awaitable) else result
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"Timed out after {timeout}s waiting for {text or predicate!r}; "
                                 f"last value: {last!r}")
        await asyncio.sleep(interval)
