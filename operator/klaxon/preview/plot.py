"""`--plot FILE.png|.svg`: one panel per series — value, expected, each level's band, violations,
alarm periods by level, the value's unit on the y-axis.

matplotlib (the `plot` extra) is imported lazily with the Agg backend, so nothing needs a display.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from klaxon.engine import ReplayResult
from klaxon.preview.run import PreviewError, PreviewResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


#: Level colours: the band of a level and the alarm periods at that level share one.
LEVEL_COLOURS = {"warning": "tab:orange", "critical": "tab:red"}


def _edges(lo: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Infinite edges (a one-sided band) as NaN: nothing drawn there."""
    return np.where(np.isfinite(lo), lo, np.nan), np.where(np.isfinite(up), up, np.nan)


def figure(res: PreviewResult, max_panels: int = MAX_PANELS) -> Figure:
    """The picture as a matplotlib figure, one panel per series: the value, each level's band
    (least severe first), violations, and the alarm periods coloured by their level."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise PreviewError("--plot needs matplotlib: pip install 'klaxon-operator[plot]'") from None

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
        _alarms(ax, t, p)
        if res.rule_series is not r:
            _value_panel(ax, t, p, res)
        else:
            ax.step(t, p.is_violation.astype(float), where="post", color="black", lw=0.9, label="condition holds")
            ax.set_ylim(-0.1, 1.3)
            ax.set_ylabel("condition holds (0/1)", fontsize=9)
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
    return fig


def _alarms(ax: Any, t: np.ndarray, p: Any) -> None:
    """The alarm periods, coloured by their level."""
    alarm = p.is_alarm_active
    level = np.asarray([lv or "" for lv in p.level], dtype=object)
    for lv in ("", *LEVEL_COLOURS):
        colour = LEVEL_COLOURS.get(lv, "tab:gray")
        spans = _spans(alarm & (level == lv))
        for a, b in spans:
            ax.axvspan(t[a], t[b] if b < len(t) else t[-1], color=colour, alpha=0.12, lw=0)
        if spans:
            ax.plot([], [], color=colour, alpha=0.3, lw=8, label=f"alarm: {lv}" if lv else "alarm")


def _value_panel(ax: Any, t: np.ndarray, p: Any, res: PreviewResult) -> None:
    """The value, each level's band (least severe first), the expected value and the violations."""
    # one band per level, least severe first: its edges as lines, the normal range (inside the
    # least severe band) lightly filled, and the zone between two levels' edges in the colour
    # of the more severe one
    bands: dict[str, tuple[np.ndarray, np.ndarray]] = {str(k): v for k, v in p.bands.items()}
    bands = bands or {"": (p.lower, p.upper)}
    uppers: list[np.ndarray] = []
    lowers: list[np.ndarray] = []
    inner: tuple[np.ndarray, np.ndarray] | None = None
    for lv in sorted(bands, key=lambda x: list(LEVEL_COLOURS).index(x) if x in LEVEL_COLOURS else -1):
        lo, up = _edges(*bands[lv])
        colour = LEVEL_COLOURS.get(lv, "tab:blue")
        label: str | None = f"{lv} band" if lv else "band"
        for edge in (up, lo):
            if np.isfinite(edge).any():
                ax.plot(t, edge, color=colour, lw=1, alpha=0.8, label=label)
                label = None
        if inner is None:
            if np.isfinite(lo).any() and np.isfinite(up).any():
                ax.fill_between(t, lo, up, color="tab:blue", alpha=0.08, lw=0, label="normal")
        else:
            ax.fill_between(t, inner[1], up, color=colour, alpha=0.12, lw=0)
            ax.fill_between(t, lo, inner[0], color=colour, alpha=0.12, lw=0)
        inner = (lo, up)
        uppers.append(up)
        lowers.append(lo)
    if np.isfinite(p.expected).any():
        ax.plot(t, p.expected, color="tab:blue", lw=1, ls="--", label="expected")
    ax.plot(t, p.value, color="black", lw=0.9, label="value")
    # a dynamic band's lower side can dwarf the data: the y-axis follows the upper edges only
    seen = np.concatenate([p.value, p.expected, *uppers, *(lowers if res.kind != "dynamic" else [])])
    seen = seen[np.isfinite(seen)]
    if seen.size:
        lo_y, hi_y = float(seen.min()), float(seen.max())
        pad = (hi_y - lo_y) * 0.1 or 1.0
        ax.set_ylim(lo_y - pad, hi_y + pad * 2.5)
    v = p.is_violation
    if v.any():
        ax.plot(t[v], p.value[v], "o", color="tab:red", ms=3, label="violation")
    ax.set_ylabel(res.value_label, fontsize=9)


def plot(res: PreviewResult, path: str | Path, max_panels: int = MAX_PANELS) -> Path:
    """Write the picture; returns the path. Size: 1200 x 400 px per panel (one extra for a composite)."""
    out = Path(path)
    if out.suffix.lower() not in (".png", ".svg"):
        raise PreviewError(f"--plot {out}: unknown image format (allowed: .png, .svg)")
    fig = figure(res, max_panels)
    import matplotlib.pyplot as plt

    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out
