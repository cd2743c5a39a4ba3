"""`klaxon preview`'s text output: the range, each series' episodes and transitions."""

from __future__ import annotations

import sys
from typing import TextIO

from klaxon.engine import ReplayResult
from klaxon.engine.types import iso
from klaxon.preview.run import PreviewResult


def fmt_duration(seconds: float) -> str:
    s = round(seconds)
    if s == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return "".join(parts)


def write_text(res: PreviewResult, out: TextIO = sys.stdout) -> None:
    out.write(
        f"AlertRule {res.namespace}/{res.name} ({res.kind}) from {iso(res.start)} to {iso(res.end)}, "
        f"warmup {fmt_duration(res.warmup_s)}\n"
    )
    if res.total_members > len(res.series) and res.rule_series is None:
        out.write(f"showing {len(res.series)} of {res.total_members} series (--series-limit)\n")
    blocks: list[tuple[str, ReplayResult]] = [
        (
            f"{'operand ' if res.rule_series is not None else ''}{s.member or res.name}"
            + (f"  {s.labels}" if s.labels else ""),
            s.result,
        )
        for s in res.series
    ]
    if res.rule_series is not None:
        blocks.append((f"rule {res.name} (logic of the operands)", res.rule_series))
    for title, r in blocks:
        out.write(f"\n{title}\n")
        if not r.transitions:
            out.write("  no transitions\n")
        for tr in r.transitions:
            out.write(f"  {iso(tr.t)}  {tr.from_state} -> {tr.to_state}  level={tr.level or '-'}  {tr.reason}\n")
        sm = r.summary
        out.write(
            f"  points={sm.points} violations={sm.violations} alarms={sm.alarms} "
            f"timeInAlarm={fmt_duration(sm.time_in_alarm_s)} lowConfidence={sm.low_confidence_points}\n"
        )
