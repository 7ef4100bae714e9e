"""Figures of gdmkit.plotting.haar: readable (labels, colour bars, tick sizes) and drawing what they say."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gdmkit import bases, plotting  # noqa: E402
from gdmkit import schedules as S  # noqa: E402
from gdmkit.plotting import haar as haar_plots  # noqa: E402

from test_plotting import _check_readable  # noqa: E402

LAB = bases.Haar((1, 16, 16), 3).labels()


@pytest.fixture(autouse=True)
def style():
    with matplotlib.rc_context():
        plotting.use_style()
        yield
        plt.close("all")


def _haar(a, b, cls=S.HaarColumnGamma):
    return cls(LAB["level"], LAB["column"], a, b)


def test_level_columns_are_in_generation_order_with_one_index_each():
    keys = haar_plots.level_columns(LAB)
    want = [(3, 0), (3, 1)] + [(2, j) for j in range(4)] + [(1, j) for j in range(8)]
    assert [(n, j) for n, j, _ in keys] == want
    for n, j, idx in keys:
        assert int(LAB["level"][idx]) == n and int(LAB["column"][idx]) == j


def test_generation_time_maps_show_t_star_with_nan_as_bad_on_one_scale():
    maps = {"corrected": S.generation_times(_haar(0.5, 0.5)),
            "printed": S.generation_times(_haar(0.5, 0.5, S.PrintedHaarColumnGamma))}
    fig = haar_plots.generation_time_maps(maps, LAB)
    assert _check_readable(fig) == 2
    ims = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(ims) == 2 and ims[0].norm is ims[1].norm
    shown = ims[1].get_array()
    assert np.ma.is_masked(shown) and bool(shown.mask[0, 0])  # the printed never-noised LL corner
    np.testing.assert_allclose(ims[0].get_array()[0, 0], float(maps["corrected"][0, 0, 0]))


def test_gamma_timelines_rows_are_the_schedule_per_level_and_column():
    sched = _haar(0.3, 0.7)
    fig = haar_plots.gamma_timelines({"x": sched, "y": _haar(0.7, 0.3)}, LAB, n_t=11)
    assert _check_readable(fig) == 2
    rows = fig.axes[0].images[0].get_array()
    assert rows.shape == (14, 11)
    want = sched.gamma(torch.linspace(0, 1, 11, dtype=torch.float64))[0][:, 0, 0, 0]  # LL^(3), column 0
    np.testing.assert_allclose(rows[0], want.numpy(), atol=1e-6)


def test_printed_vs_corrected_draws_first_and_last_column_of_each_level():
    fig = haar_plots.printed_vs_corrected({"printed": _haar(0.5, 0.5, S.PrintedHaarColumnGamma),
                                           "corrected": _haar(0.5, 0.5)}, LAB, n_t=21)
    assert _check_readable(fig) == 2
    lines = fig.axes[0].lines
    assert len(lines) == 6
    assert np.allclose(lines[0].get_ydata(), -7.0)  # printed: level i = 1 never leaves γ_min


def test_softness_map_colours_the_grid_and_the_extra_points_on_one_scale():
    df = pd.DataFrame({"a": [0.3, 0.3, 0.7, 0.7], "b": [0.3, 0.7, 0.3, 0.7], "bpd": [3.1, 3.2, 3.3, 3.4]})
    fig = haar_plots.softness_map(df, "bpd", extra={"standard": (0.0, 0.0, 3.0)}, a_cascade=2 / 3,
                                  b_cascade=[("level 1", 0.5)], label="bits/dim", title="t")
    assert _check_readable(fig) == 1
    ax = fig.axes[0]
    grid, star = ax.collections[-2], ax.collections[-1]
    np.testing.assert_allclose(grid.get_offsets(), df[["a", "b"]].to_numpy())
    assert grid.norm.vmin == 3.0 and grid.norm.vmax == 3.4 and star.norm.vmin == 3.0
    with pytest.raises(ValueError, match="lacks"):
        haar_plots.softness_map(df, "missing")
