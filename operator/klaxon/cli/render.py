"""``klaxon render``: the PrometheusRules the operator would create, without a cluster.

``--format prometheus-operator`` (default) writes PrometheusRule manifests;
``--format prometheus`` writes plain Prometheus rule files for users without the operator.
Results go to stdout, notes and problems to stderr. Exit 0 when every rule compiled,
1 when any was invalid, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .errors import UsageError
from .inputs import readable_paths

FORMATS = ("prometheus-operator", "prometheus")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "render", help="compile AlertRules to PrometheusRules (or plain Prometheus rule files)",
        description="Compile the AlertRules in PATH... (files or directories) to the PrometheusRule "
        "manifests the operator would create, or with --format prometheus to plain Prometheus rule files. "
        "AlertConfigs among the inputs supply PrometheusRule labels and default intervals. "
        "Exit 0 when all rules compiled, 1 when any is invalid, 2 on usage errors.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="YAML files or directories (searched recursively)")
    p.add_argument("-o", "--output-dir", metavar="DIR",
                   help="write one file per AlertRule into DIR (created if missing); default: stdout")
    p.add_argument("--format", choices=FORMATS, default="prometheus-operator",
                   help="prometheus-operator (PrometheusRule manifests, default) or prometheus (rule files)")
    p.add_argument("-n", "--namespace", default="default",
                   help="namespace of objects without metadata.namespace (default: default)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    return run(args.paths, output_dir=args.output_dir, fmt=args.format, namespace=args.namespace, prog=args.prog)


def run(paths: Sequence[str], output_dir: str | None = None, fmt: str = "prometheus-operator",
        namespace: str = "default", stdout: TextIO | None = None, stderr: TextIO | None = None,
        prog: str = "klaxon") -> int:
    from ..api.manifests import dump_yaml, load_paths
    from ..compile import rule_file

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        readable_paths(paths)
        if output_dir is not None and Path(output_dir).exists() and not Path(output_dir).is_dir():
            raise UsageError(f"--output-dir {output_dir}: exists and is not a directory")
    except UsageError as e:
        print(f"{prog} render: {e}", file=err)
        return 2
    parsed, configs, bad = _parse(load_paths(paths), namespace, err)
    outputs, all_groups, failed = _compile(parsed, configs, fmt, err)
    bad += failed
    if output_dir is not None:
        target = Path(output_dir)
        try:
            target.mkdir(parents=True, exist_ok=True)
            for stem, _, body in outputs:
                (target / f"{stem}.yaml").write_text(dump_yaml(body))
        except OSError as e:
            print(f"{prog} render: --output-dir {target}: cannot write ({e.strerror or e})", file=err)
            return 2
        what = "rule file(s)" if fmt == "prometheus" else "PrometheusRule(s)"
        print(f"{len(outputs)} {what} written to {target}", file=err)
    elif fmt == "prometheus":
        out.write(dump_yaml(rule_file(all_groups)))
    else:
        out.write("".join(f"---\n{dump_yaml(body)}" for _, _, body in outputs))
    return 1 if bad else 0


def _parse(docs: Sequence[Any], namespace: str, err: TextIO) -> tuple[list[Any], dict[Any, Any], int]:
    """The inputs' AlertRules and AlertConfigs; each problem printed, counted per document."""
    from ..api.alertconfig import AlertConfigSpec
    from ..api.alertrule import AlertRuleSpec
    from ..api.validation import parse_object

    bad = 0
    parsed = []
    configs: dict[tuple[str, str], AlertConfigSpec] = {}
    for doc in docs:
        if doc.error is not None:
            print(f"{doc.where}: {doc.error}", file=err)
            bad += 1
            continue
        if not doc.is_klaxon:
            continue
        p = parse_object(doc.body)
        ns = p.namespace or namespace
        if p.problems:
            for problem in p.problems:
                print(f"{doc.where}: {p.kind or '?'}/{p.name or '?'}: {problem}", file=err)
            bad += 1
            continue
        if p.kind == "AlertConfig" and isinstance(p.spec, AlertConfigSpec):
            configs[(ns, p.name)] = p.spec
        elif p.kind == "AlertRule" and isinstance(p.spec, AlertRuleSpec):
            parsed.append((doc.where, p.name, ns, p.spec))
    return parsed, configs, bad


def _compile(
    parsed: list[Any], configs: dict[Any, Any], fmt: str, err: TextIO
) -> tuple[list[tuple[str, str, dict[str, Any]]], list[dict[str, Any]], int]:
    """(file stem, kind, body) of each output, the rule groups (``--format prometheus``) and the
    number of rules that did not compile; why a rule has no PrometheusRule goes to ``err``."""
    from ..api.refs import config_key
    from ..compile import compile_rule, rule_file

    bad = 0
    outputs: list[tuple[str, str, dict[str, Any]]] = []  # (file stem, kind of output, body)
    all_groups: list[dict[str, Any]] = []
    for where, name, ns, spec in parsed:
        ident = f"{where}: AlertRule/{name}"
        key = config_key(ns, spec)
        config = configs.get(key)
        if config is None and spec.config_ref is not None:
            print(f"{ident}: note: AlertConfig {key[0]}/{key[1]} is not among the inputs; "
                  "rendering without its labels and defaults", file=err)
        result = compile_rule(name, ns, spec, config)
        if result.problems:
            for text in result.problems:
                print(f"{ident}: {text}", file=err)
            bad += 1
            continue
        if spec.events is not None:
            print(f"{ident}: event rule, evaluated by the Klaxon evaluator; no PrometheusRule", file=err)
            continue
        if result.prometheus_rule is None:
            why = "; ".join(result.evaluator_reasons) or "disabled"
            print(f"{ident}: nothing for Prometheus to evaluate ({why}); no PrometheusRule", file=err)
            continue
        if result.engine == "evaluator":
            print(f"{ident}: evaluated by the Klaxon evaluator ({'; '.join(result.evaluator_reasons)}); "
                  "the PrometheusRule holds its recording rules only", file=err)
        if fmt == "prometheus":
            outputs.append((f"{ns}_{name}.rules", "rules", rule_file(result.groups)))
            all_groups += result.groups
        else:
            outputs.append((f"{ns}_{result.prometheus_rule['metadata']['name']}", "manifest",
                            result.prometheus_rule))
    return outputs, all_groups, bad
