"""Readability of every figure in gdmkit.plotting, checked on the structure of the built Figure.

Rules (:func:`_check_readable`): every Axes showing data has x and y labels (its own, or a shared-axis
sibling's); every colour-mapped image / mesh / scatter has a colour bar; tick labels are ≥ 8 pt; a log
axis carries ≥ 3 labelled ticks inside its view. Plus each function's own content: bar heights and
error bars re-derived from the result set, titles kept verbatim (commas, ``$``) and fitting their Axes.
"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.collections import PathCollection, QuadMesh  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402

from gdmkit import groupings, plotting  # noqa: E402
from gdmkit.plotting._common import log_label, log_ticks  # noqa: E402

LONG = "AR (App. C.1: eq. 7, t = l/d), N_j=1"  # the title 02 used to split at its commas


@pytest.fixture(autouse=True)
def style():
    with matplotlib.rc_context():
        plotting.use_style()  # the notebooks' style (companion.setup_notebook)
        yield
        plt.close("all")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ structural checks

def _colour_mapped(ax):
    out = [im for im in ax.images if np.ndim(im.get_array()) == 2]
    out += [c for c in ax.collections if not isinstance(c, ContourSet) and (
        isinstance(c, QuadMesh) or (isinstance(c, PathCollection) and c.get_array() is not None))]
    return out


def _label(ax, which):
    """The Axes' own label, else one of a sibling sharing that axis (labels on the outer panels)."""
    shared = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    labels = [getattr(s, f"get_{which}label")().strip() for s in [ax, *shared.get_siblings(ax)]]
    return next((lab for lab in labels if lab), "")


def _n_log_labels(axis):
    lo, hi = sorted(axis.get_view_interval())
    ticks = (axis.get_major_ticks(len(axis.get_majorticklocs()))
             + axis.get_minor_ticks(len(axis.get_minorticklocs())))
    return len({round(t.get_loc(), 12) for t in ticks if lo * (1 - 1e-9) <= t.get_loc() <= hi * (1 + 1e-9)
                and t.label1.get_visible() and t.label1.get_text().strip()})


def _check_readable(fig):
    fig.canvas.draw()
    mapped = [m for ax in fig.axes for m in _colour_mapped(ax)]
    bars = [m.colorbar for m in mapped if m.colorbar is not None]
    cbar_axes = {cb.ax for cb in bars}
    for m in mapped:
        if m.axes in cbar_axes:  # the colour bar's own swatches
            continue
        # one colour scale (the same norm and colour map) needs one colour bar, shown for any of its images
        cb = m.colorbar or next((o.colorbar for o in mapped
                                 if o.colorbar and o.norm is m.norm and o.cmap == m.cmap), None)
        assert cb is not None, f"a colour scale without a colour bar in {m.axes.get_title()!r}"
        assert cb.ax.get_ylabel() or cb.ax.get_xlabel(), "colour bar without a label"
    n_data = 0
    for ax in fig.axes:
        if not ax.axison:
            continue
        for lab in ax.get_xticklabels() + ax.get_yticklabels():
            if lab.get_visible() and lab.get_text():
                assert lab.get_fontsize() >= 8, f"tick label {lab.get_text()!r} at {lab.get_fontsize()} pt"
        for which in "xy":
            axis = getattr(ax, f"{which}axis")
            if axis.get_scale() == "log":
                assert _n_log_labels(axis) >= 3, f"log {which} axis of {ax.get_title()!r}: < 3 tick labels"
        if ax in cbar_axes:
            continue
        picture = ax.images and all(np.ndim(im.get_array()) == 3 for im in ax.images) and not (
            ax.lines or ax.collections or ax.patches)
        if (ax.lines or ax.collections or ax.patches or ax.images) and not picture:
            n_data += 1
            assert _label(ax, "x"), f"Axes {ax.get_title()!r} has no x label"
            assert _label(ax, "y"), f"Axes {ax.get_title()!r} has no y label"
    return n_data


def _verbatim(text):
    return " ".join(text.split())


def _fits(text_artist, ax, renderer, slack=0.96):  # a gap is left between neighbouring titles
    return text_artist.get_window_extent(renderer).width <= ax.get_window_extent(renderer).width * slack


# ------------------------------------------------------------------------------------ log ticks

@pytest.mark.parametrize("lo,hi", [(0.03, 3.0), (0.024, 3.8), (80.0, 300.0), (1.1, 1.3), (7.0, 11.0),
                                   (1e-18, 2.0)])
def test_log_ticks_give_three_to_eight_values_inside_the_range(lo, hi):
    t = log_ticks(lo, hi)
    assert 3 <= len(t) <= 10 and t == sorted(set(t))
    assert all(lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9) for v in t)


def test_log_ticks_use_the_measured_values_and_fill_the_widest_gap_geometrically():
    assert log_ticks(3.7, 17.4, at=[4, 16]) == [4.0, 8.0, 16.0]  # sqrt(4 * 16) = 8
    assert log_ticks(10, 600, at=[32, 64, 128, 256, 512]) == [32, 64, 128, 256, 512]
    assert log_ticks(0.5, 2e3) == [1, 10, 100, 1000]


def test_log_ticks_reject_nonpositive_ranges():
    with pytest.raises(ValueError, match="0 < lo < hi"):
        log_ticks(0.0, 1.0)


def test_log_labels_are_plain_numbers_in_the_usual_range_and_powers_outside():
    assert [log_label(v) for v in (0.05, 2.0, 20.0, 1000.0)] == ["0.05", "2", "20", "1000"]
    assert log_label(1e-6) == "$10^{-6}$" and log_label(2e5) == r"$2.0\times10^{5}$"


# ------------------------------------------------------------------------------------ 2-D points

def test_scatter_panels_label_every_panel_x1_x2_and_can_be_overridden():
    pts = {"data": torch.randn(50, 2, generator=_gen()),
           "samples, GDM": torch.randn(50, 2, generator=_gen(1))}
    fig = plotting.scatter_panels(pts)
    assert _check_readable(fig) == 2
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes] == [("x₁", "x₂")] * 2
    assert [ax.get_title() for ax in fig.axes] == ["data", "samples, GDM"]
    fig = plotting.scatter_panels(pts, xlabel="χ₁", ylabel="χ₂")
    assert {(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes} == {("χ₁", "χ₂")}
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plotting.scatter_panels({"bad": torch.zeros(5, 3)})


def test_scatter_process_labels_every_panel_and_names_each_row():
    proc = [(t, torch.randn(40, 2, generator=_gen(i))) for i, t in enumerate((1.0, 0.5, 0.0))]
    fig = plotting.scatter_process({"trained GDM x1→x2 (k=2)": proc, "oracle": proc[:2]})
    assert _check_readable(fig) == 5  # the missing 6th cell is switched off
    grid = np.array(fig.axes).reshape(2, 3)
    assert _verbatim(grid[0, 0].get_ylabel()) == "trained GDM x1→x2 (k=2) x₂"
    assert grid[1, 1].get_ylabel() == "x₂" and grid[1, 1].get_xlabel() == "x₁"
    assert [ax.get_title() for ax in grid[0]] == ["t = 1.00", "t = 0.50", "t = 0.00"]


def test_latent_variation_2d_labels_axes_and_draws_one_line_per_base_latent():
    pts = torch.randn(3, 9, 2, generator=_gen())
    fig = plotting.latent_variation_2d({"oracle GDM": {"vary z2": pts, "vary z1": pts},
                                        "trained": {"vary z2": pts}})
    assert _check_readable(fig) == 2
    assert [len(ax.lines) for ax in fig.axes[:2]] == [6, 3]
    assert np.allclose(fig.axes[0].lines[0].get_xydata(), pts[0].numpy())


# ------------------------------------------------------------------------------------ images

def test_image_panels_keep_long_titles_verbatim_and_inside_their_panel():
    imgs = torch.rand(16, 1, 8, 8, generator=_gen()) * 2 - 1
    titles = ["test digits", LONG, "GDM k=d (eq. 8, t ~ U(0,1)), N_j=8", "cost $a$, b"]
    fig = plotting.image_panels({t: imgs for t in titles}, nrow=4)
    _check_readable(fig)
    renderer = fig.canvas.get_renderer()
    for ax, t in zip(fig.axes, titles):
        assert _verbatim(ax.get_title()) == t  # commas and "$" kept, only spaces may become line breaks
        assert _fits(ax.title, ax, renderer), f"title {t!r} wider than its panel"
    assert "\n" in fig.axes[1].get_title()


def test_image_grid_tiles_the_batch_as_an_rgb_picture():
    imgs = torch.rand(4, 1, 3, 3, generator=_gen()) * 2 - 1
    fig, ax = plt.subplots()
    plotting.image_grid(ax, imgs, nrow=2, pad=1)
    canvas = ax.images[0].get_array()
    assert canvas.shape == (2 * 4 + 1, 2 * 4 + 1, 3)  # (rows·(H+pad)+pad, cols·(W+pad)+pad, RGB)
    assert np.allclose(canvas[1:4, 5:8, 0], ((imgs[1, 0] + 1) / 2).numpy())  # image 1: row 0, column 1
    assert np.allclose(canvas[..., 0], canvas[..., 2])  # grey
    with pytest.raises(ValueError, match="N, C, H, W"):
        plotting.image_grid(ax, torch.zeros(3, 8, 8))


def test_image_process_rows_and_times():
    imgs = torch.rand(4, 3, 6, 6, generator=_gen()) * 2 - 1
    fig = plotting.image_process({"best order 012": [(1.0, imgs), (0.0, imgs)], "worst": [(1.0, imgs)]},
                                 nrow=2)
    _check_readable(fig)
    grid = np.array(fig.axes).reshape(2, 2)
    assert grid[0, 0].get_ylabel() == "best order 012" and grid[0, 1].get_title() == "t = 0.00"
    assert not grid[1, 1].axison


def test_groupings_panels_show_the_generation_order_with_a_colour_bar():
    shape = (1, 12, 12)
    gs = {"Bottom→Top": groupings.bottom_to_top(shape, 2), "blocks": groupings.blocks(shape, 3)}
    fig = plotting.groupings_panels({**gs, "index map": gs["blocks"].group[0]})
    assert _check_readable(fig) == 3
    for ax, g in zip(fig.axes, [gs["Bottom→Top"], gs["blocks"], gs["blocks"]]):
        im = ax.images[0]
        assert np.array_equal(im.get_array(), g.group[0].numpy() + 1)  # 1 = generated first
        assert im.colorbar is not None and ax.get_title().endswith(f"(k = {g.k})")
    with pytest.raises(ValueError, match="integer group indices"):
        plotting.groupings_panels({"float": torch.rand(12, 12)})


def test_change_maps_share_one_colour_scale_with_its_colour_bar():
    maps = torch.rand(9, 12, 12, generator=_gen())
    blocks = groupings.blocks((1, 12, 12), 3)
    masks = torch.stack([blocks.mask(j)[0] for j in range(9)])
    da = xr.DataArray(maps.numpy(), dims=("varied_group", "y", "x"),
                      coords={"varied_group": list(range(1, 10))})
    fig = plotting.change_maps(da, masks)
    assert _check_readable(fig) == 9
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 9 and len({id(im.norm) for im in images}) == 1  # one shared scale...
    assert {im.get_clim() for im in images} == {(0.0, float(maps.max()))}  # ...from 0 to the largest change
    assert np.allclose(images[4].get_array(), maps[4].numpy())
    assert [ax.get_title() for ax in fig.axes if ax.images][:2] == ["vary group 1", "vary group 2"]
    assert _verbatim(fig._suptitle.get_text()).startswith("Fig. 1c: mean |Δx|")
    fig = plotting.change_maps(maps[:5], ncols=3)  # a tensor; a partly empty last row
    assert _check_readable(fig) == 5
    with pytest.raises(ValueError, match="names and outlines"):
        plotting.change_maps(maps, masks[:4])


# ------------------------------------------------------------------------------------ charts

def test_loss_curves_label_a_two_decade_log_axis_with_three_ticks():
    steps = np.arange(50)
    df = pd.DataFrame({"step": np.r_[steps, steps],
                       "loss": np.r_[np.geomspace(3, 0.03, 50), np.geomspace(1, 0.1, 50)],  # 2 decades
                       "model": ["scalar, k=1"] * 50 + ["GDM"] * 50})
    fig = plotting.loss_curves(df)
    assert _check_readable(fig) == 1
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="missing"):
        plotting.loss_curves(df.rename(columns={"loss": "value"}))


@pytest.mark.parametrize("ratios", [[0.03, 0.3, 3.0], [1e-18, 0.02, 0.8]])
def test_bar_panel_log_axis_has_enough_but_not_too_many_labels(ratios):
    df = pd.DataFrame({"model": ["oracle", "trained", "scalar"] * 2, "t": [0.6] * 3 + [0.9] * 3,
                       "ratio": ratios * 2})
    title = "max_out mean|∂x̂/∂(x_t)₂| / max_out mean|∂x̂/∂(x_t)₁|, t > 0.5"
    fig = plotting.bar_panel(df, x="t", y="ratio", hue="model", logy=True, title=title)
    assert _check_readable(fig) == 1
    ax = fig.axes[0]
    assert 3 <= _n_log_labels(ax.yaxis) <= 10
    assert _verbatim(ax.get_title()) == title and (ax.get_xlabel(), ax.get_ylabel()) == ("t", "ratio")


def _t1(n_runs=3):
    names = ["Bottom→Top", "Right→Left", "CDM", "CDM-inv"]
    q = 100 + 10 * torch.rand(4, n_runs, generator=_gen(), dtype=torch.float64).numpy()
    return xr.Dataset({"quality": (("strategy", "run"), q),
                       "paper_fid10k": (("strategy",), [12.63, 13.14, 14.03, 13.7]),
                       "floor": (("floor_run",), [10.0, 12.0])},
                      coords={"strategy": names, "run": list(range(n_runs))},
                      attrs={"metric": "FD_classifier[digits12]", "nfe": 8, "k": 2, "solver": "euler"})


def test_table1_bars_show_mean_and_std_over_runs_next_to_the_paper():
    t1 = _t1()
    fig = plotting.table1_bars(t1, dataset="digits12")
    assert _check_readable(fig) == 2
    ours, paper = fig.axes
    q = t1.quality.values
    assert np.allclose([p.get_height() for p in ours.patches], q.mean(1))
    (bars,) = [c for c in ours.containers if isinstance(c, ErrorbarContainer)]
    err = bars.lines[2][0].get_segments()  # one vertical segment per bar
    assert np.allclose([s[1, 1] - s[0, 1] for s in err], 2 * q.std(1, ddof=1))
    assert np.allclose([p.get_height() for p in paper.patches], t1.paper_fid10k.values)
    floor = [ln for ln in ours.lines if ln.get_label() == "data floor"][0]
    assert np.allclose(floor.get_ydata(), 11.0)
    assert _verbatim(ours.get_title()) == "ours: digits12, Euler NFE 8, 3 runs (± std)"
    assert [t.get_text() for t in ours.get_xticklabels()] == list(t1.strategy.values)
    assert ours.get_ylabel().startswith("FD_classifier[digits12]")
    with pytest.raises(ValueError, match="quality"):
        plotting.table1_bars(t1.drop_vars("quality"))


def _orders(n, n_runs=3):
    names = ["".join(map(str, torch.randperm(9, generator=_gen(i)).tolist())) for i in range(n)]
    q = 100 + 50 * torch.rand(n, n_runs, generator=_gen(99), dtype=torch.float64).numpy()
    return xr.Dataset({"quality": (("order", "run"), q), "floor": (("floor_run",), [10.0])},
                      coords={"order": names, "run": list(range(n_runs))}, attrs={"metric": "FD", "k": 9})


def test_order_quality_sorts_orders_and_names_them_in_readable_ticks():
    ds = _orders(8)
    fig = plotting.order_quality(ds)
    assert _check_readable(fig) == 1
    ax = fig.axes[0]
    mean = ds.quality.values.mean(1)
    rank = np.argsort(mean)
    assert np.allclose(ax.lines[0].get_ydata(), mean[rank])
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(ds.order.values[i]) for i in rank]
    assert _verbatim(ax.get_title()) == "Fig. 5a: 8 block orders (k = 9), 3 runs each (± std)"


def test_order_quality_with_many_orders_ranks_them_and_names_best_and_worst():
    ds = _orders(40)
    fig = plotting.order_quality(ds)
    assert _check_readable(fig) == 1
    mean = ds.quality.values.mean(1)
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert f"best: {ds.order.values[mean.argmin()]}" in notes
    assert f"worst: {ds.order.values[mean.argmax()]}" in notes


def _fig11(nfe=(4, 16)):
    q = 80 + 100 * torch.rand(3, len(nfe), 2, generator=_gen(), dtype=torch.float64).numpy()
    q[2, 0] = np.nan  # k = 4 is impossible at NFE < 4: skipped
    return xr.Dataset({"quality": (("k", "nfe", "run"), q), "floor": (("floor_run",), [10.0, 11.0])},
                      coords={"k": [1, 2, 8], "nfe": list(nfe), "run": [0, 1]}, attrs={"metric": "FD"})


def test_efficiency_curves_log_axes_label_the_nfe_values_and_three_ticks_each():
    ds = _fig11()
    fig = plotting.efficiency_curves(ds, title="Fig. 11: k right→left strips, Euler")
    assert _check_readable(fig) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert {4.0, 16.0} <= set(ax.get_xticks())
    lines = [c.lines[0] for c in ax.containers]
    assert [len(ln.get_xdata()) for ln in lines] == [2, 2, 1]  # the NaN setting is left out
    assert np.allclose(lines[0].get_ydata(), ds.quality.values[0].mean(-1))
    assert [c.get_label() for c in ax.containers] == ["1", "2", "8"]
    assert _verbatim(ax.get_title()) == "Fig. 11: k right→left strips, Euler"
    with pytest.raises(ValueError, match="dims"):
        plotting.efficiency_curves(ds.rename({"nfe": "steps"}))


def test_trend_lines_draw_one_line_per_model_with_references_on_labelled_log_axes():
    df = pd.DataFrame({"steps": [2500, 10000, 20000] * 2, "ED": [4e-3, 1e-3, 5e-4, 2e-3, 6e-4, 3.4e-4],
                       "model": ["GDM"] * 3 + ["scalar"] * 3})
    fig = plotting.trend_lines(df, "steps", "ED", "model", {"oracle": 4.2e-4, "data floor": 3e-4},
                               xlabel="training steps", ylabel="energy distance", title="budget trend, ED")
    assert _check_readable(fig) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert {2500.0, 10000.0, 20000.0} <= set(ax.get_xticks())
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == ["GDM", "scalar", "oracle", "data floor"]
    assert np.allclose(ax.get_lines()[1].get_ydata(), [2e-3, 6e-4, 3.4e-4])
    assert _verbatim(ax.get_title()) == "budget trend, ED"
    with pytest.raises(ValueError, match="trend_lines"):
        plotting.trend_lines(df, "steps", "quality", "model")
