"""``klaxon evaluator --config NS/NAME [--shard I/N]``: run ``klaxon.evaluator.process`` for one shard."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from .cluster import api_problem, credentials
from .errors import CliError, UsageError

if TYPE_CHECKING:
    from klaxon.evaluator.options import EvaluatorOptions
    from klaxon.kube.client import Configuration

#: klaxon.evaluator.connect.DEFAULT_STATE_DIR, for the help text (a test keeps the two equal)
STATE_DIR_HELP_DEFAULT = "/var/lib/klaxon"


def options(args: argparse.Namespace) -> EvaluatorOptions:
    """The process' options from the parsed command line (and the pod's IP from the environment)."""
    from klaxon.evaluator.connect import DEFAULT_STATE_DIR
    from klaxon.evaluator.options import EvaluatorOptions

    namespace, _, name = args.config.partition("/")
    pod_ip = os.environ.get("POD_IP")
    return EvaluatorOptions(
        config_namespace=namespace,
        config_name=name,
        shard=args.shard,
        metrics_port=args.metrics_port,
        tick=args.tick,
        once=args.once,
        state_dir=args.state_dir or DEFAULT_STATE_DIR,
        lease=args.lease,
        lease_duration=args.lease_duration,
        # where standbys forward events: this pod's address while it leads
        address=f"{pod_ip}:{args.metrics_port}" if pod_ip and args.metrics_port else "",
    )


async def _main(args: argparse.Namespace, cfg: Configuration) -> int:
    import asyncio
    import signal

    from klaxon.evaluator.process import EvaluatorProcess
    from klaxon.kube.client import FAILURES, KubeClient

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    kube = await KubeClient.connect(configuration=cfg, field_manager="klaxon-evaluator")
    try:
        return await EvaluatorProcess(options(args), kube).run(stop)
    except FAILURES as e:  # the API server failed the process (unreachable, forbidden): say so in one line
        raise CliError(api_problem(e, str(cfg.host))) from None
    finally:
        await kube.close()


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from klaxon.api.sharding import parse_shard

    namespace, _, name = args.config.partition("/")
    if not (namespace and name) or "/" in name:
        raise UsageError(f"--config {args.config!r}: expected NAMESPACE/NAME of the AlertConfig")
    try:
        parse_shard(args.shard)
    except ValueError:
        raise UsageError(f"--shard {args.shard!r}: expected I/N with 0 <= I < N, e.g. 0/1") from None
    cfg = asyncio.run(credentials(args.kubeconfig))  # before the evaluator's imports: a usage error is quick

    from klaxon.evaluator.connect import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(_main(args, cfg))
    except ConfigError as e:
        raise CliError(str(e)) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluator",
        help="run the evaluator for one AlertConfig (shard)",
        description="Evaluate the AlertRules of an AlertConfig against Prometheus in a loop, "
        "write their status and hand notifications over.",
    )
    p.add_argument("--config", required=True, metavar="NS/NAME", help="the AlertConfig to evaluate")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="this shard (0-based) of N. Default 0/1")
    p.add_argument("--metrics-port", type=int, default=8081, help="port of /metrics and /healthz (0: none)")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig outside a cluster. Default: the usual lookup")
    p.add_argument("--tick", type=float, default=0.0, help="seconds between cycles. Default: min(10s, interval)")
    p.add_argument("--once", action="store_true", help="run one cycle, deliver what it queued and exit")
    p.add_argument(
        "--state-dir",
        default=None,
        metavar="PATH",
        help=f"directory of the notification outbox (SQLite). Default {STATE_DIR_HELP_DEFAULT}",
    )
    p.add_argument(
        "--lease",
        default="",
        metavar="NAME",
        help="hold this coordination.k8s.io Lease (in the AlertConfig's namespace) to run; replicas without it "
        "stand by and forward POST /v1/events to the holder. Default: no election (one replica)",
    )
    p.add_argument(
        "--lease-duration", type=float, default=15.0, help="seconds a Lease stays valid without renewal. Default 15"
    )
    p.set_defaults(func=run)
