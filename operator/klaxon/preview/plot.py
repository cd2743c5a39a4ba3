"""`--plot FILE.png|.svg`: one panel per series — value, expected, band, violations, alarm periods.

matplotlib (the `plot` extra) is imported lazily with the Agg backend, so nothing needs a display.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import numpy as np

from klaxon.engine import ReplayResult
from klaxon.preview.run import PreviewError, PreviewResult

MAX_PANELS = 6
PANEL_W_PX = 1200
PANEL_H_PX = 400
DPI = 100


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs where mask is true."""
    if not mask.size:
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def plot(res: PreviewResult, path: str | Path, max_panels: int = MAX_PANELS) -> Path:
    """Write the picture; returns the path. Size: 1200 x 400 px per panel (one extra for a composite)."""
    out = Path(path)
    if out.suffix.lower() not in (".png", ".svg"):
        raise PreviewError(f"--plot {out}: unknown image format (allowed: .png, .svg)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise PreviewError("--plot needs matplotlib: pip install 'klaxon[plot]'") from None

    panels: list[tuple[str, ReplayResult]] = [(s.member or res.name, s.result) for s in res.series[:max_panels]]
    if res.rule_series is not None:
        panels.append((f"{res.name} (composite, logic of the operands)", res.rule_series))
    total = res.total_members if res.rule_series is None else len(res.series)
    left_out = max(0, total - min(len(res.series), max_panels))

    n = len(panels)
    fig, axes = plt.subplots(
        n, 1, figsize=(PANEL_W_PX / DPI, PANEL_H_PX * n / DPI), dpi=DPI, squeeze=False, sharex=True
    )
    for ax, (title, r) in zip(axes[:, 0], panels, strict=True):
        p = r.points
        t = np.round(p.t * 1000).astype("datetime64[ms]")
        alarm = p.is_alarm_active
        for a, b in _spans(alarm):
            t_end = t[b] if b < len(t) else t[-1]
            ax.axvspan(t[a], t_end, color="tab:red", alpha=0.12, lw=0)
        has_band = bool(np.isfinite(p.lower).any() or np.isfinite(p.upper).any())
        if res.rule_series is not r:
            if has_band:
                lo = np.where(np.isfinite(p.lower), p.lower, np.nan)
                up = np.where(np.isfinite(p.upper), p.upper, np.nan)
                if np.isfinite(lo).any() and np.isfinite(up).any():
                    ax.fill_between(t, lo, up, color="tab:blue", alpha=0.15, lw=0, label="band")
                else:
                    edge = up if np.isfinite(up).any() else lo
                    ax.plot(t, edge, color="tab:blue", lw=1, alpha=0.6, label="threshold")
            if np.isfinite(p.expected).any():
                ax.plot(t, p.expected, color="tab:blue", lw=1, ls="--", label="expected")
            ax.plot(t, p.value, color="black", lw=0.9, label="value")
            edges = [p.upper, p.lower] if res.kind != "dynamic" else [p.upper]
            seen = np.concatenate([p.value, p.expected, *edges])
            seen = seen[np.isfinite(seen)]
            if seen.size:
                lo_y, hi_y = float(seen.min()), float(seen.max())
                pad = (hi_y - lo_y) * 0.1 or 1.0
                ax.set_ylim(lo_y - pad, hi_y + pad * 2.5)
            v = p.is_violation
            if v.any():
                ax.plot(t[v], p.value[v], "o", color="tab:red", ms=3, label="violation")
        else:
            ax.step(t, p.is_violation.astype(float), where="post", color="black", lw=0.9, label="condition holds")
            ax.set_ylim(-0.1, 1.3)
        if alarm.any():
            ax.plot([], [], color="tab:red", alpha=0.3, lw=8, label="alarm active")
        sm = r.summary
        ax.set_title(
            f"{title} — {sm.violations} violations, {sm.alarms} alarms, {int(sm.time_in_alarm_s // 60)} min in alarm",
            fontsize=10,
            loc="left",
        )
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, ncol=6)
    ax_last = axes[-1, 0]
    ax_last.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=UTC))  # type: ignore[no-untyped-call]
    ax_last.set_xlabel("time (UTC)")
    fig.suptitle(f"klaxon preview {res.namespace}/{res.name}", fontsize=11, x=0.01, ha="left")
    if left_out:
        fig.text(0.99, 0.005, f"{left_out} more series not shown", ha="right", va="bottom", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out
