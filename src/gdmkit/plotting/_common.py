"""Shared pieces of the figures: readable font sizes, verbatim wrapped titles, labelled log axes."""
from __future__ import annotations

import math
import textwrap
from typing import Sequence

TICK_SIZE = 8.0  # pt: the smallest tick-label size any figure uses
LEGEND_SIZE = 8.0  # pt


def plt():
    import matplotlib.pyplot as _plt

    return _plt


def distinct_colors(n: int) -> list:
    """n colours no two of which are equal: the style's cycle (C0..C9) up to 10, tab20 up to 20, beyond
    that evenly spaced hues (the cycle repeats after 10, so an 11th series would share C0's colour)."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    cmap = plt().get_cmap("tab20" if n <= 20 else "hsv")
    return [cmap(i / (20 if n <= 20 else n)) for i in range(n)]


def readable_ticks(ax, size: float = TICK_SIZE) -> None:
    """Tick labels of ``ax`` at least ``size`` points (never smaller than the style's)."""
    for axis in (ax.xaxis, ax.yaxis):
        for lab in axis.get_ticklabels():
            lab.set_fontsize(max(lab.get_fontsize(), size))
        axis.set_tick_params(labelsize=max(size, _rc_size(axis)))


def _rc_size(axis) -> float:
    import matplotlib as mpl
    from matplotlib.font_manager import FontProperties

    name = "xtick.labelsize" if axis.axis_name == "x" else "ytick.labelsize"
    return FontProperties(size=mpl.rcParams[name]).get_size_in_points()


def set_title(ax, text: str, **kw):
    """Set a title shown verbatim: no mathtext (a ``$`` stays a ``$``); :func:`fit_titles` may wrap it
    at spaces later, never dropping a character."""
    return ax.set_title(str(text), parse_math=False, **kw)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.fill(line, max(width, 8), break_long_words=False, break_on_hyphens=False)
                     for line in text.split("\n"))


def _fit(text_artist, size_px: float, renderer, along: str = "width") -> None:
    """Rewrap ``text_artist`` at spaces until its ``along`` extent is ≤ ``size_px`` (or cannot shrink)."""
    original = text_artist.get_text()
    if not original or size_px <= 0:
        return
    chars = max(len(line) for line in original.split("\n"))
    while chars > 8 and getattr(text_artist.get_window_extent(renderer), along) > size_px:
        chars -= max(1, chars // 10)
        text_artist.set_text(_wrap(original, chars))


def fit_titles(fig, layout: bool = True) -> None:
    """Wrap Axes titles and x labels to the Axes' width, y labels to its height, the suptitle to the
    figure's width; then redo the layout.

    Wrapping breaks lines at spaces only, so the text, punctuation included, is kept verbatim
    (``" ".join(text.split())`` is unchanged).
    """
    tight = layout and not fig.get_constrained_layout()
    if tight:
        fig.tight_layout()
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        _fit(ax.title, box.width * 0.95, renderer)
        _fit(ax.xaxis.label, box.width, renderer)
        _fit(ax.yaxis.label, box.height, renderer, along="height")
    if fig._suptitle is not None:
        _fit(fig._suptitle, fig.bbox.width * 0.98, renderer)
    if tight:
        fig.tight_layout()


# ------------------------------------------------------------------------------------ log axes

def log_ticks(lo: float, hi: float, at: Sequence[float] = (), n_min: int = 3, n_max: int = 8) -> list[float]:
    """Tick values for a log axis on [lo, hi]: at least ``n_min`` of them, at most about ``n_max``.

    ``at`` (e.g. the NFE values measured) are used first when any lie in the range; otherwise powers of
    10, else the 1-2-5 sequence, else 1..9 × 10ⁿ. While fewer than ``n_min``, a (rounded) geometric mean
    is inserted in the widest gap, e.g. 4, 16 → 4, 8, 16.
    """
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"a log axis needs 0 < lo < hi, got [{lo}, {hi}]: plot positive values only")

    def inside(vs):
        return sorted({float(v) for v in vs if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)})

    ticks = inside(v for v in at if v > 0)
    if not ticks:
        e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        for mant in ((1,), (1, 2, 5), tuple(range(1, 10))):
            ticks = inside(m * 10.0 ** e for e in range(e0, e1 + 1) for m in mant)
            if len(ticks) >= n_min:
                break
    if len(ticks) > n_max:
        ticks = ticks[:: math.ceil(len(ticks) / n_max)]
    while len(ticks) < n_min:
        pts = [lo, *ticks, hi]
        i = max(range(len(pts) - 1), key=lambda i: math.log(pts[i + 1] / pts[i]))
        a, b = pts[i], pts[i + 1]
        new = float(f"{math.sqrt(a * b):.2g}")
        ticks = sorted(ticks + [new if a < new < b and new not in ticks else math.sqrt(a * b)])
    return ticks


def log_label(v: float, _pos=None) -> str:
    """'0.05', '20', '1000' in [1e-3, 1e4); '10⁻⁶'-style mathtext outside."""
    if 1e-3 <= abs(v) < 1e4:
        return f"{float(f'{v:.3g}'):g}"
    m, e = f"{v:.1e}".split("e")
    return f"$10^{{{int(e)}}}$" if m == "1.0" else f"${m}\\times10^{{{int(e)}}}$"


def log_axis(ax, which: str, at: Sequence[float] = ()) -> None:
    """Put the ``which`` ('x' or 'y') axis of ``ax`` on a log scale with ≥ 3 labelled ticks.

    Call after every artist is drawn: the current data limits are frozen, ticks from :func:`log_ticks`.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{which}scale")("log")
    ax.autoscale_view()  # dataLim already holds every artist (relim would drop collections)
    axis = getattr(ax, f"{which}axis")
    lo, hi = sorted(axis.get_view_interval())
    getattr(ax, f"set_{which}lim")(lo, hi)
    axis.set_major_locator(FixedLocator(log_ticks(lo, hi, at)))
    axis.set_major_formatter(FuncFormatter(log_label))
    axis.set_minor_locator(LogLocator(subs="auto"))
    axis.set_minor_formatter(NullFormatter())
