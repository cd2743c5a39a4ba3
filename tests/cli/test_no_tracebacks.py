"""No traceback reaches a user: every subcommand, as a real subprocess, under every condition a user
meets — no kubeconfig, missing files, a stdout closed early (``| head``), unreadable input,
Prometheus failing (unreachable, 4xx/5xx, timeouts, garbage), the API server failing.

Each cell names its command line and the exit status it must end with (0 ok, 1 failure,
2 usage error, 141 stdout closed). Output must hold no traceback and no "unexpected error" (the
entry point's last resort: a cell reaching it is a bug whose cause needs its own message), and a
failing command says why on stderr, starting with the program's name. A subcommand missing from
the matrix, or a condition missing for a subcommand without a stated reason, fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from klaxon.cli.main import build_parser
from support.clirun import EXAMPLES, Cluster, Result, clean_env, free_port, kubeconfig_for, run

CONDITIONS = ("no-kubeconfig", "missing-file", "closed-stdout", "unreadable-input", "prometheus-error", "api-error")

RULE = str(EXAMPLES / "10-model-accuracy.yaml")
DATA = str(EXAMPLES / "data" / "10-model-accuracy.csv")
EVENT_RULE = str(EXAMPLES / "11-night-person-detection.yaml")
EVENTS = str(EXAMPLES / "data" / "11-night-person-events.jsonl")
CONFIG = str(EXAMPLES / "14-alertconfig-events.yaml")
WINDOW = ["--from", "2026-06-24T10:00:00Z", "--to", "2026-06-24T11:00:00Z"]

TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|^\s*File \".*\", line \d+|Exception ignored|unexpected error"
    r"|^[A-Za-z_.]*(Error|Exception)(: |$)",
    re.M,
)


@dataclass
class Ctx:
    """Paths and servers the command lines refer to."""

    tmp: Path
    cluster: Cluster
    failing: str
    closed_port: int
    files: dict[str, str] = field(default_factory=dict)

    def kube(self, mode: str) -> str:
        """A kubeconfig whose server fails as ``mode`` says (or is not there at all)."""
        server = f"http://127.0.0.1:{self.closed_port}" if mode == "unreachable" else f"{self.failing}/{mode}"
        return str(kubeconfig_for(server, self.tmp / f"kubeconfig-{mode}"))


@dataclass
class Cell:
    argv: list[str]
    codes: tuple[int, ...]
    closed_stdout: bool = False
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 90.0
    stop_after: float | None = None


Cells = Callable[[Ctx], list[Cell]]
#: subcommand -> condition -> the cells to run, or why the condition cannot reach that subcommand
MATRIX: dict[str, dict[str, Cells | str]] = {}

NO_PROM = "never queries Prometheus"
#: argparse's --help and --version give up quietly on a closed stdout (exit 0); anything else is 141
HELP_CLOSED = (0, 141)
NO_API = "never contacts the Kubernetes API"


def cell(*argv: str, codes: tuple[int, ...] = (2,), **kw: object) -> Cell:
    return Cell(["klaxon", *argv], codes, **kw)  # type: ignore[arg-type]


def make_inputs(ctx: Ctx) -> None:
    t = ctx.tmp
    (t / "adir.yaml").mkdir()
    # /proc/self/mem of the reading process: open() works, read() fails (EIO) — unreadable even for root
    for name in ("unreadable.yaml", "unreadable.csv", "unreadable.jsonl", "unreadable-kubeconfig"):
        (t / name).symlink_to("/proc/self/mem")
    walk = t / "walk"
    walk.mkdir()
    (walk / "mem.yaml").symlink_to("/proc/self/mem")
    for name in ("binary.yaml", "binary.csv", "binary.jsonl", "binary-kubeconfig"):
        (t / name).write_bytes(b"\xff\xfe\x00\x9c garbage \x00")
    (t / "garbage.yaml").write_text("apiVersion: klaxon.dev/v1alpha1\nkind: AlertRule\nspec: [\n")
    (t / "garbage.csv").write_text("this,is\nnot,sample,data\n")
    (t / "garbage.jsonl").write_text("not json at all\n")
    (t / "coerced.jsonl").write_text(
        '{"id": 5, "timestamp": "2025-01-15T22:30:00", "risk_score": "80", "colour": "red"}\n'
    )
    (t / "garbage-kubeconfig").write_text("clusters: [\n")
    (t / "list-kubeconfig").write_text("- a\n- b\n")
    state = t / "state"
    state.mkdir()
    ctx.files.update(state=str(state), walk=str(walk))
    if os.geteuid() != 0:  # permission bits mean nothing to root
        locked = t / "locked.yaml"
        locked.write_text("x: 1\n")
        locked.chmod(0)


def f(ctx: Ctx, name: str) -> str:
    return str(ctx.tmp / name)


# --- validate and render: files only ----------------------------------------------------------

for _cmd in ("validate", "render"):
    MATRIX[_cmd] = {
        "no-kubeconfig": lambda ctx, c=_cmd: [cell(c, RULE, codes=(0,))],
        "missing-file": lambda ctx, c=_cmd: [cell(c, "/nonexistent/rules.yaml"), cell(c, RULE, "/nonexistent")],
        "closed-stdout": lambda ctx, c=_cmd: [cell(c, str(EXAMPLES), codes=(141,), closed_stdout=True)],
        "unreadable-input": lambda ctx, c=_cmd: [
            cell(c, f(ctx, "unreadable.yaml")),
            cell(c, ctx.files["walk"], codes=(1,)),  # found by walking a directory: a problem of that file
            cell(c, f(ctx, "binary.yaml"), codes=(1,)),
            cell(c, f(ctx, "garbage.yaml"), codes=(1,)),
            *([cell(c, f(ctx, "locked.yaml"))] if os.geteuid() != 0 else []),
        ],
        "prometheus-error": NO_PROM,
        "api-error": NO_API,
    }
MATRIX["render"]["missing-file"] = lambda ctx: [
    cell("render", "/nonexistent/rules.yaml"),
    cell("render", RULE, "-o", f(ctx, "binary.yaml")),  # the output "directory" is a file
]

# --- preview: files, or Prometheus ------------------------------------------------------------


def _preview_prometheus(ctx: Ctx) -> list[Cell]:
    prom = ["preview", RULE, *WINDOW, "--timeout", "1"]
    out = [
        cell(*prom, "--prometheus", f"http://127.0.0.1:{ctx.closed_port}", codes=(1,)),
        cell(*prom, "--prometheus", f"https://127.0.0.1:{ctx.failing.rsplit(':', 1)[1]}", codes=(1,)),  # TLS to plain
        cell(*prom, "--prometheus", "prometheus:9090"),  # not a URL
        cell(*prom, "--prometheus", "http://user:secret@127.0.0.1:9090"),
        cell(*prom, "--prometheus", ctx.failing, "--ca-file", f(ctx, "binary.csv")),  # not a CA bundle
    ]
    for mode in ("html404", "json500", "json400", "text503", "hang", "garbage", "wrongshape"):
        out.append(cell(*prom, "--prometheus", f"{ctx.failing}/{mode}", codes=(1,)))
    dynamic = ["preview", str(EXAMPLES / "12-api-latency-dynamic.yaml"), *WINDOW, "--timeout", "1"]
    out.append(cell(*dynamic, "--prometheus", f"{ctx.failing}/json500", codes=(1,)))  # the raw-sample reads
    return out


MATRIX["preview"] = {
    "no-kubeconfig": lambda ctx: [cell("preview", RULE, "--data", DATA, codes=(0,))],
    "missing-file": lambda ctx: [
        cell("preview", "/nonexistent.yaml", "--data", DATA),
        cell("preview", RULE, "--data", "/nonexistent.csv"),
        cell("preview", RULE, "--data", "acc=/nonexistent.csv"),
        cell("preview", RULE, "--data", DATA, "--plot", "/nonexistent/dir/plot.png"),
        cell("preview", RULE, "--data", DATA, "--plot", f(ctx, "plot.jpg")),
        cell("preview", RULE, "--prometheus", "http://127.0.0.1:9090", *WINDOW, "--ca-file", "/nonexistent.pem"),
    ],
    "closed-stdout": lambda ctx: [
        cell("preview", RULE, "--data", DATA, codes=(141,), closed_stdout=True),
        cell("preview", RULE, "--data", DATA, "-o", "json", codes=(141,), closed_stdout=True),
        cell("preview", "--help", codes=HELP_CLOSED, closed_stdout=True),
    ],
    "unreadable-input": lambda ctx: [
        cell("preview", f(ctx, "unreadable.yaml"), "--data", DATA),
        cell("preview", f(ctx, "adir.yaml"), "--data", DATA),
        cell("preview", f(ctx, "binary.yaml"), "--data", DATA, codes=(1,)),
        cell("preview", f(ctx, "garbage.yaml"), "--data", DATA, codes=(1,)),
        cell("preview", RULE, "--data", f(ctx, "unreadable.csv")),
        cell("preview", RULE, "--data", f(ctx, "binary.csv"), codes=(1,)),
        cell("preview", RULE, "--data", f(ctx, "garbage.csv"), codes=(1,)),
        cell("preview", RULE, "--data", f(ctx, "binary.yaml")),  # not a data format
    ],
    "prometheus-error": _preview_prometheus,
    "api-error": NO_API,
}

# --- test-rule ----------------------------------------------------------------------------------

MATRIX["test-rule"] = {
    "no-kubeconfig": lambda ctx: [cell("test-rule", EVENT_RULE, "--events", EVENTS, codes=(0,))],
    "missing-file": lambda ctx: [
        cell("test-rule", "/nonexistent.yaml", "--events", EVENTS),
        cell("test-rule", EVENT_RULE, "--events", "/nonexistent.jsonl"),
        cell("test-rule", EVENT_RULE, "--events", EVENTS, "--config", "/nonexistent.yaml"),
    ],
    "closed-stdout": lambda ctx: [
        cell("test-rule", EVENT_RULE, "--events", EVENTS, codes=(141,), closed_stdout=True),
        cell("test-rule", EVENT_RULE, "--events", EVENTS, "-o", "json", codes=(141,), closed_stdout=True),
    ],
    "unreadable-input": lambda ctx: [
        cell("test-rule", EVENT_RULE, "--events", f(ctx, "unreadable.jsonl")),
        cell("test-rule", EVENT_RULE, "--events", f(ctx, "binary.jsonl")),
        cell("test-rule", EVENT_RULE, "--events", f(ctx, "garbage.jsonl")),
        cell("test-rule", EVENT_RULE, "--events", f(ctx, "coerced.jsonl")),
        cell("test-rule", EVENT_RULE, "--events", f(ctx, "adir.yaml")),
        cell("test-rule", f(ctx, "binary.yaml"), "--events", EVENTS),
        cell("test-rule", f(ctx, "garbage.yaml"), "--events", EVENTS),
        cell("test-rule", EVENT_RULE, "--events", EVENTS, "--config", f(ctx, "garbage.yaml")),
    ],
    "prometheus-error": NO_PROM,
    "api-error": NO_API,
}

# --- cluster commands ---------------------------------------------------------------------------


def _cluster_cells(args: list[str], ok_out: list[str] | None) -> dict[str, Cells | str]:
    """The cells of a command that reads (and writes) the cluster, ``args`` before ``--kubeconfig``."""

    def with_config(path: str, codes: tuple[int, ...] = (2,), **kw: object) -> Cell:
        return cell(*args, "--kubeconfig", path, codes=codes, **kw)

    return {
        "no-kubeconfig": lambda ctx: [cell(*args)],
        "missing-file": lambda ctx: [with_config("/nonexistent/kubeconfig")],
        "closed-stdout": lambda ctx: [
            with_config(str(ctx.cluster.kubeconfig), (141,), closed_stdout=True)
            if ok_out is not None
            else cell(*args, "--help", codes=HELP_CLOSED, closed_stdout=True)
        ],
        "unreadable-input": lambda ctx: [
            with_config(f(ctx, name))
            for name in (
                "unreadable-kubeconfig",
                "binary-kubeconfig",
                "garbage-kubeconfig",
                "list-kubeconfig",
                "adir.yaml",
            )
        ],
        "prometheus-error": NO_PROM,
        "api-error": lambda ctx: [with_config(ctx.kube(m), (1,)) for m in ("unreachable", "k403", "k500", "k404")],
    }


MATRIX["status"] = _cluster_cells(["status", "-A"], [])
MATRIX["entries list"] = _cluster_cells(["entries", "-A"], [])
MATRIX["entries ack"] = _cluster_cells(["entries", "ack", "perimeter", "k1", "--force", "-n", "site"], [])
MATRIX["entries tag"] = _cluster_cells(
    ["entries", "tag", "perimeter", "k1", "--action", "Security dispatched", "--force", "-n", "site"], []
)

_EVALUATOR = ["evaluator", "--config", "default/main", "--once", "--metrics-port", "0"]


def _evaluator(ctx: Ctx, *extra: str, codes: tuple[int, ...] = (2,), **kw: object) -> Cell:
    return cell(*_EVALUATOR, "--state-dir", ctx.files["state"], *extra, codes=codes, **kw)


MATRIX["evaluator"] = {
    **_cluster_cells(_EVALUATOR, None),
    "missing-file": lambda ctx: [_evaluator(ctx, "--kubeconfig", "/nonexistent/kubeconfig")],
    # it logs to stderr; a closed stdout must not matter to a run against a real API
    "closed-stdout": lambda ctx: [
        _evaluator(ctx, "--kubeconfig", str(ctx.cluster.kubeconfig), codes=(0,), closed_stdout=True),
        cell("evaluator", "--help", codes=HELP_CLOSED, closed_stdout=True),
    ],
    # an AlertConfig whose Prometheus fails: the rules get an Error status, the process says nothing more
    "prometheus-error": lambda ctx: [
        cell(
            "evaluator",
            "--config",
            f"default/{name}",
            "--once",
            "--metrics-port",
            "0",
            "--state-dir",
            ctx.files["state"],
            "--kubeconfig",
            str(ctx.cluster.kubeconfig),
            codes=(0,),
        )
        for name in ("prom-unreachable", "prom-json500", "prom-hang")
    ],
    "api-error": lambda ctx: [
        _evaluator(ctx, "--kubeconfig", ctx.kube(m), codes=(1,)) for m in ("unreachable", "k403", "k500", "k404")
    ],
}

MATRIX["operator"] = {
    **_cluster_cells(["operator"], None),
    "missing-file": lambda ctx: [
        cell("operator", "--kubeconfig", "/nonexistent/kubeconfig"),
        cell("operator", "--kubeconfig", str(ctx.cluster.kubeconfig), "--webhook-cert-dir", "/nonexistent"),
    ],
    "unreadable-input": lambda ctx: [
        *[cell("operator", "--kubeconfig", f(ctx, n)) for n in ("unreadable-kubeconfig", "garbage-kubeconfig")],
        cell("operator", "--kubeconfig", str(ctx.cluster.kubeconfig), env={"KLAXON_LOG_LEVEL": "LOUD"}),
        cell("operator", "--kubeconfig", str(ctx.cluster.kubeconfig), env={"KLAXON_METRICS_PORT": "eighty"}),
    ],
    # long-running: a failing API server (unreachable included) is retried, a one-line warning a try,
    # until SIGTERM, as the Lease's elector and kopf do
    "api-error": lambda ctx: [
        cell("operator", "--kubeconfig", ctx.kube(m), "--metrics-port", "0", "--health-port", "0",
             codes=(0, 1, -15, 143), stop_after=6.0) for m in ("unreachable", "k403", "k500", "k404")
    ],
}

# --- the program itself ---------------------------------------------------------------------------

MATRIX["(no subcommand)"] = {
    "no-kubeconfig": lambda ctx: [cell(codes=(2,)), cell("--version", codes=(0,)), cell("bogus", codes=(2,))],
    "missing-file": "takes no files",
    "closed-stdout": lambda ctx: [
        cell("--help", codes=HELP_CLOSED, closed_stdout=True),
        cell("--version", codes=HELP_CLOSED, closed_stdout=True),
    ],
    "unreadable-input": "takes no input",
    "prometheus-error": NO_PROM,
    "api-error": NO_API,
}


def seed(cluster: Cluster, failing: str, closed_port: int) -> None:
    """What the cluster commands read: an event rule with an open entry, AlertConfigs for the evaluator."""
    rule = {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": "perimeter", "namespace": "site"},
        "spec": {"events": {"riskThreshold": 30}, "notify": {"dedupKey": "{camera_id}"}},
    }
    entry = {
        "key": "k1",
        "state": "Open",
        "eventCount": 3,
        "firstEventTime": "2026-01-01T00:00:00Z",
        "lastEventTime": "2026-01-01T00:05:00Z",
    }
    cluster.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "site"}}
    )
    cluster.apply("alertrules", rule, {"entries": [entry], "entriesCount": 1})
    prometheus = {
        "main": f"{failing}/json500",
        "prom-unreachable": f"http://127.0.0.1:{closed_port}",
        "prom-json500": f"{failing}/json500",
        "prom-hang": f"{failing}/hang",
    }
    for name, url in prometheus.items():
        cluster.apply(
            "alertconfigs",
            {
                "apiVersion": "klaxon.dev/v1alpha1",
                "kind": "AlertConfig",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"prometheus": {"url": url, "timeout": "2s"}, "defaults": {"interval": "1m"}},
            },
        )
    cluster.apply(
        "alertrules",
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertRule",
            "metadata": {"name": "latency", "namespace": "default"},
            "spec": {
                "query": {"metric": "api_latency_p95_ms", "window": "5m"},
                "condition": {"operator": "gt", "threshold": 200},
            },
        },
    )


def subcommands() -> set[str]:
    """Every subcommand the parser knows (entries' actions counted apiece), and the bare program."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    names = {str(n) for n in sub.choices}  # type: ignore[union-attr]
    names.discard("entries")
    return names | {"entries list", "entries ack", "entries tag", "(no subcommand)"}


def test_the_matrix_covers_every_subcommand_and_condition() -> None:
    assert set(MATRIX) == subcommands()
    for name, row in MATRIX.items():
        assert set(row) == set(CONDITIONS), name


CASES = [(name, cond) for name in MATRIX for cond in CONDITIONS if not isinstance(MATRIX[name][cond], str)]


@pytest.fixture(scope="module")
def ctx(emulated_cluster: Cluster, failing_server: str, tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    c = Ctx(tmp_path_factory.mktemp("cli-matrix"), emulated_cluster, failing_server, free_port())
    make_inputs(c)
    seed(emulated_cluster, failing_server, c.closed_port)
    return c


def check(res: Result, codes: tuple[int, ...], prog: str = "klaxon") -> None:
    assert not TRACEBACK.search(res.out + res.err), f"traceback text:\n{res}"
    assert res.code in codes, f"exit {res.code}, expected one of {codes}:\n{res}"
    if res.code in (1, 2) and not res.out.strip():
        first = res.err.strip().splitlines()[0] if res.err.strip() else ""
        located = re.match(r"\S+:\d+: \S", first)  # FILE:LINE: problem, as compilers say it
        assert first.startswith((prog, "usage:")) or located, f"no message naming the program or the file:\n{res}"


@pytest.mark.parametrize(("name", "condition"), CASES, ids=[f"{n}|{c}" for n, c in CASES])
def test_no_traceback(ctx: Ctx, name: str, condition: str) -> None:
    build = MATRIX[name][condition]
    assert not isinstance(build, str)
    cells = build(ctx)
    assert cells, f"{name} has no command line for {condition}"
    home = ctx.tmp / "home"
    home.mkdir(exist_ok=True)
    for c in cells:
        res = run(c.argv, clean_env(home, **c.env), closed_stdout=c.closed_stdout, timeout=c.timeout,
                  stop_after=c.stop_after)
        check(res, c.codes)


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (the plugin runs without it, as kubectl-klaxon)")
@pytest.mark.parametrize("name", list(MATRIX))
def test_kubectl_plugin_has_no_traceback(ctx: Ctx, name: str) -> None:
    """``kubectl klaxon ...`` (kubectl finds kubectl-klaxon on PATH): every subcommand, the first
    command line of every condition (the rest take the same code paths under another name)."""
    home = ctx.tmp / "home"
    home.mkdir(exist_ok=True)
    ran = 0
    for condition in CONDITIONS:
        build = MATRIX[name][condition]
        if isinstance(build, str):
            continue
        c = build(ctx)[0]
        argv = [str(KUBECTL), "klaxon", *c.argv[1:]]
        res = run(argv, clean_env(home, **c.env), closed_stdout=c.closed_stdout, timeout=c.timeout,
                  stop_after=c.stop_after)
        check(res, c.codes, prog="kubectl klaxon")
        ran += 1
    assert ran
