"""`klaxon preview`: replay an AlertRule over sample data or a Prometheus range (SEMANTICS §7).

This module parses the options and checks every input before any work starts (a missing
file, an unknown data format, a plot path in a directory that does not exist, a malformed
Prometheus URL are one line and exit 2, and nothing is written); the work is
``klaxon.preview`` (imported when the command runs: numpy and the engine are not needed to
start ``klaxon``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import ssl
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

from klaxon.preview import SERIES_LIMIT_DEFAULT, SERIES_LIMIT_MAX

from .errors import CliError, UsageError
from .inputs import readable_file, writable_file

if TYPE_CHECKING:
    from klaxon.preview.prometheus import PrometheusFetch
    from klaxon.preview.run import FileSource, LoadedRule, PreviewResult

PLOT_SUFFIXES = (".png", ".svg")

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
    from klaxon.preview.data import DataError, parse_timestamp

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
    from klaxon.api.common import parse_duration

    try:
        return parse_duration(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seconds(raw: str) -> float:
    try:
        t = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not 0 < t <= 3600:
        raise argparse.ArgumentTypeError(f"{raw} is out of range (allowed: more than 0, at most 3600 seconds)")
    return t


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
    p.add_argument("--timeout", type=_seconds, default=30.0, help="Prometheus request timeout in seconds")
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
    p.add_argument("--plot", metavar="FILE.png|.svg",
                   help="draw the series, each level's band, violations and alarms by level")
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


def data_files(specs: list[str]) -> list[tuple[str | None, Path]]:
    """``[OPERAND=]FILE`` options as (operand, file): each file readable with a known format, each
    (operand, file) once (``--data F --data F`` is the same as ``--data F``)."""
    from klaxon.preview.data import DataError, data_format

    out: list[tuple[str | None, Path]] = []
    seen: set[tuple[str | None, Path]] = set()
    for item in specs:
        name, sep, path = item.partition("=")
        operand: str | None = None
        if sep and name.replace("_", "").isalnum() and not os.path.exists(item):
            operand, item = name, path
        p = readable_file(item, "--data")
        try:
            data_format(p)
        except DataError as e:
            raise UsageError(f"--data {e}") from None
        key = (operand, p.resolve())
        if key not in seen:
            seen.add(key)
            out.append((operand, p))
    return out


def file_source(files: list[tuple[str | None, Path]]) -> FileSource:
    """The samples of the data files; a series in two files would count twice, so it is refused."""
    from klaxon.preview.data import load_file
    from klaxon.preview.run import FileSource, PreviewError

    src = FileSource()
    origin: dict[tuple[str | None, tuple[tuple[str, str], ...]], Path] = {}
    for operand, path in files:
        series = load_file(path)
        for s in series:
            key = (operand, tuple(sorted(s.labels.items())))
            if key in origin:
                raise PreviewError(
                    f"{path}: series {dict(key[1]) or '(no labels)'} is also in {origin[key]} "
                    "(allowed: each series in one file)"
                )
            origin[key] = path
        if operand is not None:
            src.per_operand.setdefault(operand, []).extend(series)
        else:
            src.default += series
        src.names.append(str(path))
    return src


def prometheus_options(args: argparse.Namespace) -> tuple[str | None, tuple[str, str] | None]:
    """(token, basic auth) after checking the Prometheus options; UsageError names the option."""
    url = urlsplit(args.prometheus)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UsageError(f"--prometheus {args.prometheus!r}: not an http(s) URL (allowed: e.g. http://prometheus:9090)")
    if url.username or url.password:
        raise UsageError("--prometheus: credentials in the URL are not sent (use --basic-auth or --token)")
    if args.ca_file:
        readable_file(args.ca_file, "--ca-file")
        try:
            ssl.create_default_context(cafile=args.ca_file)
        except (ssl.SSLError, ValueError) as e:
            raise UsageError(f"--ca-file {args.ca_file}: not a PEM CA bundle ({e})") from None
    token = args.token or os.environ.get("KLAXON_PROMETHEUS_TOKEN") or None
    basic = args.basic_auth or os.environ.get("KLAXON_PROMETHEUS_BASIC_AUTH") or None
    if token and basic:
        raise UsageError("--token and --basic-auth (or their environment variables) both set: use one")
    auth: tuple[str, str] | None = None
    if basic:
        user, sep, password = basic.partition(":")
        if not sep or not user:
            raise UsageError("--basic-auth must be USER:PASS")
        auth = (user, password)
    return token, auth


def prometheus_fetch(
    args: argparse.Namespace, ref: LoadedRule, token: str | None, auth: tuple[str, str] | None
) -> PrometheusFetch:
    from klaxon.api.common import parse_duration
    from klaxon.api.refs import effective_interval
    from klaxon.preview.prometheus import PrometheusFetch

    interval = parse_duration(effective_interval(ref.spec))
    return PrometheusFetch(args.prometheus, interval, token, auth, args.ca_file, args.insecure, args.timeout)


def run(args: argparse.Namespace) -> int:
    # Inputs first: nothing is read, queried or written before every path and option is known good.
    readable_file(args.rule_file, "RULE.yaml")
    files = data_files(args.data) if args.data else []
    token, auth = prometheus_options(args) if args.prometheus else (None, None)
    if args.plot:
        writable_file(args.plot, "--plot", PLOT_SUFFIXES)
        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError("--plot needs matplotlib: pip install 'klaxon-operator[plot]'")
    if args.start is not None and args.end is not None and args.end < args.start:
        raise UsageError("--to is before --from")

    from klaxon.preview.data import DataError
    from klaxon.preview.run import PreviewError, build_engine_rule, load_rule, run_preview

    try:
        ref = load_rule(args.rule_file, args.rule)
        build_engine_rule(ref)  # event rules fail here, before any data is read
        if args.prometheus:
            end = args.end if args.end is not None else time.time()
            start = args.start if args.start is not None else end - 86400.0
            fetch = prometheus_fetch(args, ref, token, auth)
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
                file_source(files).fetch,
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
        raise CliError(str(e)) from None
    return 0


def emit(res: PreviewResult, output: str, out: TextIO) -> None:
    from klaxon.preview.report import write_text

    if output == "json":
        json.dump(res.to_dict(), out, separators=(",", ":"))
        out.write("\n")
    else:
        write_text(res, out)
