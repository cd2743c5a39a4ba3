"""``klaxon operator``: parse the options and run ``klaxon.operator.process``.

Every flag has a ``KLAXON_*`` environment default: that is how the chart configures the pod.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from .errors import CliError, UsageError

if TYPE_CHECKING:
    from ..operator.process import OperatorOptions

DEFAULT_IMAGE = "ghcr.io/klaxon-dev/klaxon:0.1.0"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"KLAXON_{name}") or default


def _env_bool(name: str, default: bool) -> bool:
    return _env(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "operator",
        help="run the Klaxon operator (kopf) against a cluster",
        description="Reconcile AlertRules, AlertConfigs and NotificationChannels. Credentials come from "
        "--kubeconfig, the in-cluster service account, or the default kubeconfig, in that order. "
        "Every option defaults to its KLAXON_* environment variable (as the chart sets them).",
    )
    add = p.add_argument
    add("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    add("--context", help="kubeconfig context (default: the current one)")
    add("-n", "--namespace", action="append", dest="namespaces", metavar="NS",
        help="watch only this namespace (repeatable; $KLAXON_NAMESPACES, comma-separated); default: all namespaces")
    add("--metrics-port", type=int, default=_env("METRICS_PORT", "8080"),
        help="prometheus metrics port ($KLAXON_METRICS_PORT, default 8080; 0 = off)")
    add("--health-port", "--liveness-port", dest="health_port", type=int, default=_env("HEALTH_PORT", "8081"),
        help="port of /healthz and /readyz ($KLAXON_HEALTH_PORT, default 8081; 0 = off)")
    add("--webhook-cert-dir", default=_env("WEBHOOK_CERT_DIR", "") or None,
        help="directory with tls.crt and tls.key: serve the validating webhook over HTTPS "
        "($KLAXON_WEBHOOK_CERT_DIR; default: no webhook, the CRDs' CEL rules still validate)")
    add("--webhook-port", type=int, default=_env("WEBHOOK_PORT", "9443"),
        help="validating webhook port ($KLAXON_WEBHOOK_PORT, default 9443)")
    add("--leader-election", action=argparse.BooleanOptionalAction, default=_env_bool("LEADER_ELECTION", True),
        help="elect one active replica through a Lease ($KLAXON_LEADER_ELECTION, default on)")
    add("--lease-namespace", default=_env("POD_NAMESPACE", os.environ.get("POD_NAMESPACE", "klaxon-system")),
        help="namespace of the Lease ($KLAXON_POD_NAMESPACE, default klaxon-system)")
    add("--lease-name", default=_env("LEASE_NAME", "klaxon-operator"),
        help="name of the Lease ($KLAXON_LEASE_NAME, default klaxon-operator)")
    add("--lease-duration", type=float, default=_env("LEASE_DURATION_SECONDS", "15"),
        help="seconds a Lease is valid without renewal ($KLAXON_LEASE_DURATION_SECONDS, default 15)")
    add("--renew-deadline", type=float, default=_env("RENEW_DEADLINE_SECONDS", "10"),
        help="seconds the leader keeps failing to renew before it stops ($KLAXON_RENEW_DEADLINE_SECONDS, default 10)")
    add("--retry-period", type=float, default=_env("RETRY_PERIOD_SECONDS", "2"),
        help="seconds between acquire/renew attempts ($KLAXON_RETRY_PERIOD_SECONDS, default 2)")
    add("--api-retry-seconds", type=float, default=_env("API_RETRY_SECONDS", "300"),
        help="how long kopf retries a failing API request (a watch, its own annotations) before the operator "
        "gives up and exits to be restarted ($KLAXON_API_RETRY_SECONDS, default 300)")
    add("--evaluator-image", default=_env("EVALUATOR_IMAGE", os.environ.get("KLAXON_IMAGE", DEFAULT_IMAGE)),
        help="image of evaluator Deployments unless an AlertConfig sets one ($KLAXON_EVALUATOR_IMAGE)")
    add("--evaluator-image-pull-policy", default=_env("EVALUATOR_IMAGE_PULL_POLICY", "IfNotPresent"),
        help="imagePullPolicy of evaluator pods ($KLAXON_EVALUATOR_IMAGE_PULL_POLICY)")
    add("--image-pull-secrets", default=_env("IMAGE_PULL_SECRETS", ""),
        help="comma-separated imagePullSecrets for evaluator pods ($KLAXON_IMAGE_PULL_SECRETS)")
    add("--resync", type=float, default=600.0, help="seconds between full resyncs (default 600)")
    add("--log-level", type=str.upper, choices=LOG_LEVELS, default=_env("LOG_LEVEL", "INFO"),
        help="log level ($KLAXON_LOG_LEVEL, default INFO)")
    add("--log-format", choices=["text", "json"], default=_env("LOG_FORMAT", "text"),
        help="log format ($KLAXON_LOG_FORMAT, default text)")
    p.set_defaults(func=run)


def _namespaces(args: argparse.Namespace) -> list[str]:
    if args.namespaces:
        return list(args.namespaces)
    return [n.strip() for n in _env("NAMESPACES", "").split(",") if n.strip()]


def options(args: argparse.Namespace) -> OperatorOptions:
    """The process' options from the command line."""
    from ..operator.process import OperatorOptions
    from ..operator.runtime import Options

    runtime = Options(
        image=args.evaluator_image,
        image_pull_policy=args.evaluator_image_pull_policy,
        image_pull_secrets=tuple(s.strip() for s in args.image_pull_secrets.split(",") if s.strip()),
        kubeconfig=args.kubeconfig,
        context=args.context,
        resync_seconds=args.resync,
        namespaces=tuple(_namespaces(args)),
    )
    return OperatorOptions(
        runtime=runtime,
        namespaces=tuple(_namespaces(args)),
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        webhook_cert_dir=args.webhook_cert_dir,
        webhook_port=args.webhook_port,
        leader_election=args.leader_election,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        api_retry_seconds=args.api_retry_seconds,
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from .cluster import api_problem, credentials

    if args.log_level not in LOG_LEVELS:  # argparse checks choices on the command line, not on $KLAXON_LOG_LEVEL
        raise UsageError(f"log level {args.log_level!r} (allowed: {', '.join(LOG_LEVELS)})")
    if args.webhook_cert_dir is not None:
        missing = [f for f in ("tls.crt", "tls.key") if not os.path.isfile(os.path.join(args.webhook_cert_dir, f))]
        if missing:
            raise UsageError(
                f"--webhook-cert-dir {args.webhook_cert_dir}: no {' or '.join(missing)} there "
                "(mount the webhook certificate's Secret, or leave the option unset to run without the webhook)"
            )
    cfg = asyncio.run(credentials(args.kubeconfig, args.context))  # one line, before anything starts

    from ..kube.client import FAILURES
    from ..operator.process import configure_logging, run_operator

    configure_logging(args.log_level, args.log_format)
    try:
        return asyncio.run(run_operator(options(args)))
    except FAILURES as e:  # the API server failed the process (unreachable, forbidden): one line, exit 1
        raise CliError(api_problem(e, str(cfg.host))) from None
