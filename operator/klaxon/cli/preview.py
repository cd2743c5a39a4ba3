"""`klaxon preview`: replay an AlertRule over sample data or a Prometheus range (SEMANTICS §7)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

import numpy as np

from klaxon.api.alertrule import Query
from klaxon.api.common import parse_duration
from klaxon.api.refs import effective_interval
from klaxon.compile.query import raw_range, series_selector
from klaxon.preview.data import DataError, RawSeries, load_file, parse_timestamp
from klaxon.preview.run import (
    SERIES_LIMIT_DEFAULT,
    SERIES_LIMIT_MAX,
    FileSource,
    LoadedRule,
    PreviewError,
    PreviewResult,
    build_engine_rule,
    load_rule,
    run_preview,
    write_text,
)

if TYPE_CHECKING:
    from klaxon.prom.client import PrometheusClient

DESCRIPTION = """\
Replay an AlertRule over history without a cluster: the evaluator's evaluation on its grid,
each baseline using only data before its time. Prints the transitions {t, from, to, level,
reason} and a summary; -o json gives every per-point field; --plot draws one panel per series.

Data (--data FILE; the format follows the suffix):
  .csv   header  timestamp,<label columns...>,value  (label columns optional; e.g.
         timestamp,host,value). A __name__ column names the metric (rows of other metrics
         are ignored), an "operand" column the composite operand.
  .json  a Prometheus query_range response {"data":{"result":[{"metric":{..},"values":[[ts,"v"]]}]}}
         or [{"labels":{..},"samples":[[ts,v],...]}]
  .om    OpenMetrics text: # TYPE ..., name{label="v"} value timestamp, # EOF
  Timestamps: RFC 3339 with a zone or unix seconds (milliseconds are rejected). Timestamps
  must strictly increase per series; values must be finite. Errors name file:line.
  The rule's selector and scope filter the series (a label the data does not carry at
  all is taken as already selected); splitBy groups them into members. The value is the
  rule's query over the data: each series aggregated over its window, then the series of a
  member combined as the PromQL does; for a raw expr the data are the expr's values.
  Composite rules: --data NAME=FILE per operand, or one file whose series carry
  operand="NAME" (or __name__ = the operand's metric).

Prometheus (--prometheus URL): the rule's value query (the PromQL the evaluator and the
compiled PrometheusRule use) evaluated at every evaluation time of [from - warmup, to];
raw samples are read for a dynamic rule's baseline. Auth: --token / $KLAXON_PROMETHEUS_TOKEN or
--basic-auth USER:PASS / $KLAXON_PROMETHEUS_BASIC_AUTH; --ca-file, --insecure.

Defaults: --to = the last sample (now with --prometheus), --from = the first sample + warmup
(to - 24h with --prometheus); warmup = max(lookback weeks, violation window, recovery window,
for). Multi-series rules show at most --series-limit members, sorted by member key.
"""

EPILOG = (
    "Example: klaxon preview examples/12-api-latency-dynamic.yaml "
    "--data examples/data/12-api-latency.csv --plot preview.png"
)


def _time(raw: str) -> float:
    try:
        return parse_timestamp(raw, "--from/--to")
    except DataError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _limit(raw: str) -> int:
    try:
        n = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if not 1 <= n <= SERIES_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"{n} is out of range (allowed: 1..{SERIES_LIMIT_MAX})")
    return n


def _duration(raw: str) -> float:
    try:
        return parse_duration(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "preview",
        help="replay an AlertRule over sample data or a Prometheus range (backtest)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("rule_file", metavar="RULE.yaml", help="file with the AlertRule")
    p.add_argument("--rule", metavar="NAME", help="the AlertRule's name when the file holds several")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", action="append", metavar="[OPERAND=]FILE", help="sample data file (repeatable)")
    src.add_argument("--prometheus", metavar="URL", help="Prometheus base URL for range queries")
    p.add_argument("--token", help="bearer token (default $KLAXON_PROMETHEUS_TOKEN)")
    p.add_argument("--basic-auth", metavar="USER:PASS", help="basic auth (default $KLAXON_PROMETHEUS_BASIC_AUTH)")
    p.add_argument("--ca-file", help="CA bundle for TLS")
    p.add_argument("--insecure", action="store_true", help="skip TLS verification")
    p.add_argument("--timeout", type=float, default=30.0, help="Prometheus request timeout in seconds")
    p.add_argument("--from", dest="start", type=_time, metavar="TIME", help="RFC 3339 or unix seconds")
    p.add_argument("--to", dest="end", type=_time, metavar="TIME", help="RFC 3339 or unix seconds")
    p.add_argument("--warmup", type=_duration, metavar="DURATION", help="override the warmup before --from")
    p.add_argument(
        "--series-limit",
        type=_limit,
        default=SERIES_LIMIT_DEFAULT,
        metavar="N",
        help=f"members of a split rule to replay (default {SERIES_LIMIT_DEFAULT}, max {SERIES_LIMIT_MAX})",
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    p.add_argument("--plot", metavar="FILE.png|.svg", help="draw the series, band, violations and alarms")
    p.set_defaults(func=run)


class ProgressBar:
    """A progress line on stderr when it is a terminal; silent when piped."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.t0 = time.monotonic()

    def __call__(self, done: int, total: int, what: str) -> None:
        if not self.enabled:
            return
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r[{bar:<30}] {done}/{total} {what[:40]:<40} {time.monotonic() - self.t0:5.1f}s")
        if done >= total:
            self.stream.write("\r" + " " * 100 + "\r")
        self.stream.flush()


def file_source(specs: list[str]) -> FileSource:
    src = FileSource()
    for item in specs:
        name, sep, path = item.partition("=")
        if sep and name.replace("_", "").isalnum() and not os.path.exists(item):
            src.per_operand[name] = load_file(path)
            src.names.append(path)
        else:
            src.default += load_file(item)
            src.names.append(item)
    return src


def prometheus_fetch(args: argparse.Namespace, ref: LoadedRule) -> PrometheusFetch:
    token = args.token or os.environ.get("KLAXON_PROMETHEUS_TOKEN") or None
    basic = args.basic_auth or os.environ.get("KLAXON_PROMETHEUS_BASIC_AUTH") or None
    auth: tuple[str, str] | None = None
    if basic:
        user, sep, password = basic.partition(":")
        if not sep:
            raise PreviewError("--basic-auth must be USER:PASS")
        auth = (user, password)
    interval = parse_duration(effective_interval(ref.spec))
    return PrometheusFetch(args.prometheus, interval, token, auth, args.ca_file, args.insecure, args.timeout)


#: Evaluations per range query (Prometheus refuses more than 11,000 points per series).
RANGE_POINTS = 10_000
#: Raw samples are read in slices of this many seconds (one range-vector query each).
RAW_SLICE_S = 86_400.0


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
    ) -> None:
        self.url, self.interval_s, self.token, self.basic_auth = url, interval_s, token, basic_auth
        self.ca_file, self.insecure, self.timeout = ca_file, insecure, timeout

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

        out: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], np.ndarray]] = {}
        try:
            async with self._client() as client:
                for a in range(0, grid.size, RANGE_POINTS):
                    chunk = grid[a : a + RANGE_POINTS]
                    for r in await client.query_range(expr, float(chunk[0]), float(chunk[-1]), self.interval_s):
                        key = tuple(sorted(r.labels.items()))
                        x = out.setdefault(key, (dict(r.labels), np.full(grid.shape, np.nan)))[1]
                        idx = a + np.rint((r.times - chunk[0]) / self.interval_s).astype(np.int64)
                        x[idx] = r.values
        except PrometheusError as e:
            raise PreviewError(f"{self.url}: query {expr!r} failed: {e}") from None
        return [out[k] for k in sorted(out)]

    def evaluate(self, expr: str, grid: np.ndarray) -> list[tuple[dict[str, str], np.ndarray]]:
        return asyncio.run(self._evaluate(expr, grid)) if grid.size else []

    async def _raw(self, q: Query, start: float, end: float) -> list[RawSeries]:
        from klaxon.prom.client import PrometheusError

        parts: dict[tuple[tuple[str, str], ...], list[tuple[np.ndarray, np.ndarray]]] = {}
        t = end
        try:
            async with self._client() as client:
                while t > start:
                    span = min(RAW_SLICE_S, t - start)
                    for r in await client.query_matrix(raw_range(q, span, self.interval_s), t):
                        parts.setdefault(tuple(sorted(r.labels.items())), []).append((r.times, r.values))
                    t -= span
        except PrometheusError as e:
            raise PreviewError(f"{self.url}: reading the samples of {series_selector(q)} failed: {e}") from None
        out = []
        for key, chunks in sorted(parts.items()):
            times = np.concatenate([c[0] for c in reversed(chunks)])
            values = np.concatenate([c[1] for c in reversed(chunks)])
            ok = np.isfinite(values)  # drop NaN (stale markers)
            out.append(RawSeries(dict(key), times[ok], values[ok], self.url))
        return out

    def __call__(self, q: Query, operand: str | None, start: float, end: float) -> list[RawSeries]:
        return asyncio.run(self._raw(q, start, end))


def run(args: argparse.Namespace) -> int:
    try:
        ref = load_rule(args.rule_file, args.rule)
        build_engine_rule(ref)  # event rules fail here, before any data is read
        if args.prometheus:
            end = args.end if args.end is not None else time.time()
            start = args.start if args.start is not None else end - 86400.0
            fetch = prometheus_fetch(args, ref)
            res = run_preview(
                ref,
                fetch,
                start,
                end,
                evaluate=fetch.evaluate,
                series_limit=args.series_limit,
                warmup=args.warmup,
                progress=ProgressBar(),
            )
        else:
            res = run_preview(
                ref,
                file_source(args.data).fetch,
                args.start,
                args.end,
                series_limit=args.series_limit,
                warmup=args.warmup,
                progress=ProgressBar(),
            )
        emit(res, args.output, sys.stdout)
        if args.plot:
            from klaxon.preview.plot import plot

            t0 = time.monotonic()
            path = plot(res, args.plot)
            print(f"wrote {path} ({time.monotonic() - t0:.2f}s)", file=sys.stderr)
    except (PreviewError, DataError) as e:
        print(f"klaxon preview: {e}", file=sys.stderr)
        return 1
    return 0


def emit(res: PreviewResult, output: str, out: TextIO) -> None:
    if output == "json":
        json.dump(res.to_dict(), out, separators=(",", ":"))
        out.write("\n")
    else:
        write_text(res, out)
