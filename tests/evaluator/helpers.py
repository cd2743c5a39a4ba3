"""Shared builders for the evaluator tests."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from klaxon.api import AlertRuleSpec, parse_object
from klaxon.evaluator import RuleRef, SeriesTransition

#: Three days ago on the hour: old enough for promtool blocks, young enough for 4-week baselines.
T0 = float((int(time.time()) // 3600 - 72) * 3600)
MIN = 60.0


def spec(body: dict[str, Any]) -> AlertRuleSpec:
    parsed = parse_object(
        {"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertRule", "metadata": {"name": "r"}, "spec": body}
    )
    assert parsed.ok, parsed.problems
    assert isinstance(parsed.spec, AlertRuleSpec)
    return parsed.spec


def rule(name: str, body: dict[str, Any], status: dict[str, Any] | None = None, ns: str = "default") -> RuleRef:
    """A RuleRef; `engine: evaluator` unless the body says otherwise (these tests drive the evaluator's
    own engine over backfilled data; `auto` rules that compile fully are Prometheus' to evaluate)."""
    if "evaluation" not in body:
        body = {**body, "evaluation": {"engine": "evaluator"}}
    return RuleRef(namespace=ns, name=name, uid=f"uid-{ns}-{name}", spec=spec(body), status=status)


def minutes(start: float, end: float, value: Any) -> list[tuple[float, float]]:
    """One sample a minute in [start, end); `value` is a number or a function of the time."""
    out = []
    t = start
    while t < end:
        out.append((t, float(value(t) if callable(value) else value)))
        t += MIN
    return out


class Recorder:
    """A TransitionSink that keeps what it is handed."""

    def __init__(self) -> None:
        self.seen: list[SeriesTransition] = []

    async def handle(self, notification: SeriesTransition) -> None:
        self.seen.append(notification)


async def run_loop(
    args: argparse.Namespace,
    api_client: Any,
    stop: asyncio.Event,
    notifier: Any = None,
    elector: Any = None,
    *,
    clock: Callable[[], float],
    **kwargs: Any,
) -> int:
    """``klaxon evaluator`` in process: the command line's options, a client over ``api_client``
    (bound to the emulated cluster), the evaluation ``clock`` injected."""
    from klaxon.cli.evaluator_cmd import options
    from klaxon.evaluator.process import EvaluatorProcess
    from klaxon.kube.client import KubeClient

    opts = options(args)
    process = EvaluatorProcess(opts, KubeClient(api_client), clock=clock, notifier=notifier, elector=elector, **kwargs)
    return await process.run(stop)
