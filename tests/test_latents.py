"""Band-wise latent operations and the Fig. 4 measurements (gdmkit.latents), against exact answers."""
import math

import pytest
import torch

from gdmkit import bases, features, groupings, latents, oracles, paths, sampling, schedules

SHAPE = (3, 16, 16)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def basis():
    return bases.DCT(SHAPE)


def _gaussian(basis):
    """Gaussian data diagonal in the DCT basis with a decaying spectrum."""
    lab = basis.labels()
    var = ((lab["kh"].double() ** 2 + lab["kw"].double() ** 2 + 1.0) ** -1.0).expand(SHAPE).contiguous()
    return oracles.DiagonalGaussian(basis, torch.zeros(SHAPE), var * (0.1 / var.mean()))


def test_band_starts_truncate_the_paper_sets():
    assert latents.band_starts(256) == [30, 100]            # 16×16: S3 truncated to 100..255, no S4
    assert latents.band_starts(4096) == [30, 100, 500]      # 64×64: all four sets
    assert latents.band_starts(30) == []                    # too small: one band
    with pytest.raises(ValueError, match="increase strictly"):
        latents.band_starts(256, [30, 30])
    with pytest.raises(ValueError, match="positive integer"):
        latents.band_starts(0)


def test_paper_bands_are_the_index_sets(basis):
    g = latents.paper_bands(basis)
    rank = basis.labels()["rank"].expand(SHAPE)
    assert g.k == 3 and g.sizes() == [3 * 30, 3 * 70, 3 * 156]
    for j, (lo, hi) in enumerate([(0, 29), (30, 99), (100, 255)]):
        assert bool(((rank >= lo) & (rank <= hi) == g.mask(j)).all())
    assert latents.band_labels(g, basis) == ["[0, 29]", "[30, 99]", "[100, 255]"]
    # a rank is a radial frequency: the DC coefficient of every channel is in S1
    assert bool(g.mask(0)[:, 0, 0].all())


def test_masks(basis):
    m = latents.rank_mask(basis, 10)
    assert int(m.sum()) == 3 * 10 and not bool(latents.rank_mask(basis, 0).any())
    assert bool(latents.rank_mask(basis, 256).all())
    g = latents.paper_bands(basis)
    assert bool((latents.band_mask(g, [0, 1]) == latents.rank_mask(basis, 100)).all())
    with pytest.raises(ValueError, match="m must be"):
        latents.rank_mask(basis, 257)


def test_swap_resample_fix_change_only_their_components(basis):
    g = latents.paper_bands(basis)
    a, b = torch.randn(4, *SHAPE, generator=_gen(0)), torch.randn(4, *SHAPE, generator=_gen(1))
    m = g.mask(1)
    s = latents.swap(a, b, m)
    assert torch.equal(s[:, m], b[:, m]) and torch.equal(s[:, ~m], a[:, ~m])
    r = latents.resample(a, m, _gen(2))
    assert torch.equal(r[:, ~m], a[:, ~m]) and not bool((r[:, m] == a[:, m]).any())
    keep = latents.rank_mask(basis, 30)
    v = latents.fix_and_resample(a[0], keep, 5, _gen(3))
    assert v.shape == (5, *SHAPE)
    assert torch.equal(v[:, keep], a[0][keep].expand(5, -1))
    assert bool((v[:, ~keep].std(0) > 0).all())  # the rest differs between variations
    with pytest.raises(ValueError, match="mask has shape"):
        latents.swap(a, b, m[0])


def test_traverse_sets_one_element(basis):
    z = torch.randn(SHAPE, generator=_gen(0))
    t = latents.traverse(z, (1, 0, 2), [-3.0, 0.0, 3.0])
    assert t.shape == (3, *SHAPE) and t[:, 1, 0, 2].tolist() == [-3.0, 0.0, 3.0]
    other = torch.ones(SHAPE, dtype=torch.bool)
    other[1, 0, 2] = False
    assert torch.equal(t[:, other], z[other].expand(3, -1))
    with pytest.raises(ValueError, match="does not point"):
        latents.traverse(z, (3, 0, 0), [1.0])


def test_interpolate_endpoints_and_norm(basis):
    g = latents.paper_bands(basis)
    z0, z1 = torch.randn(SHAPE, generator=_gen(0)).double(), torch.randn(SHAPE, generator=_gen(1)).double()
    m = g.mask(0)
    out = latents.interpolate(z0, z1, m, torch.linspace(0, 1, 5))
    assert torch.allclose(out[0], z0) and torch.allclose(out[-1][m], z1[m])
    assert torch.equal(out[:, ~m], z0[~m].expand(5, -1))
    # slerp between two vectors of equal norm keeps that norm
    z1n = z1.clone()
    z1n[m] = z1[m] / z1[m].norm() * z0[m].norm()
    mid = latents.interpolate(z0, z1n, m, [0.3, 0.5])
    assert torch.allclose(mid[:, m].norm(dim=1), z0[m].norm().expand(2), rtol=1e-9)
    lin = latents.interpolate(z0, z1, m, [0.5], spherical=False)
    assert torch.allclose(lin[0][m], (z0[m] + z1[m]) / 2)


def _oracle_codec(basis, grouping, nfe, data):
    sched = schedules.GroupwiseSchedule(grouping)
    path = paths.DiagonalPath(basis, sched)
    grid = sched.time_grid(sampling.per_group_steps(grouping.k, nfe))
    return latents.Codec(path, data.denoiser(path), grid)


@pytest.mark.parametrize("bands", [True, False], ids=["gdm-f", "k=1"])
def test_encode_decode_is_the_exact_flow_map(basis, bands):
    """For Gaussian data diagonal in the basis the exact flow maps z̄_i to x̄_i = m_i + √v_i z̄_i."""
    data = _gaussian(basis)
    g = latents.paper_bands(basis) if bands else groupings.single(SHAPE)
    codec = _oracle_codec(basis, g, 96, data)
    z = torch.randn(8, *SHAPE, generator=_gen(0))
    exact = basis.from_coeffs(z * data.var.sqrt().float())
    x = codec.decode(z)
    assert (x - exact).abs().max() < 5e-3
    assert (codec.decode(codec.encode(exact)) - exact).abs().max() < 5e-3
    assert codec.nfe == 3 * 2 * 96  # Heun: 2 evaluations per step, three passes of 96 steps


def test_oracle_latent_swap_changes_only_that_band(basis):
    """Prop. 3.3 with an exact diagonal flow: swapping band j's latents changes only band j's coefficients."""
    data = _gaussian(basis)
    g = latents.paper_bands(basis)
    codec = _oracle_codec(basis, g, 24, data)
    a, b = torch.randn(4, *SHAPE, generator=_gen(0)), torch.randn(4, *SHAPE, generator=_gen(1))
    ca = basis.to_coeffs(codec.decode(a))
    for j in range(g.k):
        cs = basis.to_coeffs(codec.decode(latents.swap(a, b, g.mask(j))))
        m = g.mask(j)
        assert (cs[:, ~m] - ca[:, ~m]).abs().max() < 1e-5
        assert (cs[:, m] - ca[:, m]).abs().max() > 1e-2


def test_variance_curve_matches_the_closed_form(basis):
    data = _gaussian(basis)
    g = latents.paper_bands(basis)
    codec = _oracle_codec(basis, g, 96, data)
    ms = [0, 3, 30, 100, 256]
    ds = latents.variance_curve(codec, basis, ms, [features.IdentityFeatures()], n_base=3, n_var=48,
                                generator=_gen(5))
    mean, std = latents.gaussian_variance_curve(data.var, basis, ms, 48)
    est = torch.as_tensor(ds.pv.sel(feature="pixels").mean("base").values)
    z = (est[:-1] - mean[:-1]) / (std[:-1] / math.sqrt(3))
    assert bool((z.abs() < 4).all()), z
    assert float(est[-1]) < 1e-8  # everything fixed: no variance at all
    assert bool((est[1:] <= est[:-1]).all())  # per-component independence: monotone in m


def test_gaussian_variance_curve_by_hand():
    rank = torch.tensor([[0, 1], [2, 3]])
    v = torch.tensor([[4.0, 3.0], [2.0, 1.0]], dtype=torch.float64)
    mean, std = latents.gaussian_variance_curve(v, rank, [0, 2, 4], 5)
    assert torch.allclose(mean, torch.tensor([10.0, 3.0, 0.0], dtype=torch.float64) * 4 / 5)
    assert torch.allclose(std, torch.tensor([30.0, 5.0, 0.0], dtype=torch.float64).sqrt() * math.sqrt(8) / 5)


def test_reconstruction_curve_exact(basis):
    data = _gaussian(basis)
    g = latents.paper_bands(basis)
    codec = _oracle_codec(basis, g, 96, data)
    x = data.sample(6, _gen(0))
    ds, z = latents.reconstruction_curve(codec, x, basis, [0, 30, 256], generator=_gen(1))
    mse = ds.mse.mean("image").values
    assert mse[2] < 1e-5 < mse[1] < mse[0]  # all kept: identity; fewer kept: worse
    # keeping rank < 30 exactly leaves the resampled coefficients' error: E = 2 Σ_{rank>=30} v / d
    free = data.var[basis.labels()["rank"].expand(SHAPE) >= 30].sum()
    assert abs(mse[1] - float(2 * free / math.prod(SHAPE))) < 0.5 * float(2 * free / math.prod(SHAPE))


def test_whiteness_of_prior_draws(basis):
    g = latents.paper_bands(basis)
    z = torch.randn(2000, *SHAPE, generator=_gen(0))
    w = latents.whiteness(z, g)
    assert list(w["band"]) == [0, 1, 2] and list(w["d"]) == g.sizes()
    assert ((w["cov_ratio"] - 1).abs() < 0.1).all()      # its expectation is exactly 1 for N(0, I)
    assert ((w["mean_sq"] - 1).abs() < 0.02).all()
    assert (w["ks_reject"] < 0.05).all()
    bad = w["cov_ratio"]
    w2 = latents.whiteness(z * 1.5 + 0.2, g)
    assert (w2["cov_ratio"] > 10 * bad).all() and (w2["ks_reject"] > 0.5).all()


def test_whiteness_statistics_are_their_definitions(basis):
    """The N × N Gram form of the covariance ratio and the vectorised KS test equal the d × d and per-component
    definitions; the total correlation is NaN exactly where N ≤ d (singular correlation matrix)."""
    from scipy import stats

    g = latents.paper_bands(basis)
    z = torch.randn(40, *SHAPE, generator=_gen(3)) * 1.3 + 0.1
    w = latents.whiteness(z, g)
    for j in range(g.k):
        zb = z.double()[:, g.mask(j)]
        n, d = zb.shape
        m2 = zb.T @ zb / n
        direct = float((m2 - torch.eye(d, dtype=m2.dtype)).square().sum() / (d * (d + 1) / n))
        assert w["cov_ratio"][j] == pytest.approx(direct, rel=1e-9)
        ks = sum(stats.kstest(zb[:, i].numpy(), "norm").pvalue < 0.01 for i in range(d)) / d
        assert 0 < ks < 1 and w["ks_reject"][j] == pytest.approx(ks)
        D = torch.tensor([stats.kstest(zb[:, i].numpy(), "norm").statistic for i in range(d)])
        assert torch.allclose(latents.ks_statistic(zb), D.double(), rtol=1e-12, atol=0)
        if n > d:
            tc = -0.5 * float(torch.linalg.slogdet(torch.corrcoef(zb.T)).logabsdet)
            assert w["gauss_tc"][j] == pytest.approx(tc, rel=1e-9)
        else:
            assert math.isnan(w["gauss_tc"][j])


# ------------------------------------------------------------------------------------------ figures
def test_latent_figures_are_readable():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import xarray as xr
    from test_plotting import _check_readable

    from gdmkit.plotting import latents as latent_plots

    df = pd.DataFrame([{"feature": f, "model": m, "m": mm, "pv": 10.0 / (1 + mm), "pv_std": 0.1}
                       for f in ("pixels", "clf") for m in ("GDM-F", "k = 1") for mm in (0, 3, 30)])
    assert _check_readable(latent_plots.variance_curves(df, [30], reference=df[df.model == "k = 1"])) == 2
    fig = latent_plots.variance_curves(df, [30], paper_band=(3.0, 5.0), threshold=0.1)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "paper's semantic band (10–17 %)" in labels and "PV(m) / PV(0) = 0.1" in labels
    span = [p for p in ax.patches if p.get_label().startswith("paper")]
    assert len(span) == 1 and np.allclose([span[0].get_x(), span[0].get_x() + span[0].get_width()], [3.0, 5.0])
    rec = pd.DataFrame({"model": ["a", "a", "b", "b"], "m": [0, 30, 0, 30], "mse": [0.1, 0.01, 0.1, 0.05],
                        "mse_sem": [0.01] * 4})
    assert _check_readable(latent_plots.reconstruction_curves(rec, [30])) == 1
    img = torch.rand(3, 3, 8, 8) * 2 - 1
    _check_readable(latent_plots.image_rows({"a": img, "b": img[:2]}, ["1", "2", "3"], title="t"))
    mat = xr.DataArray(np.random.rand(2, 3), dims=("factor", "band"),
                       coords={"factor": ["x", "y"], "band": ["[0, 29]", "[30, 99]", "[100, 255]"]})
    assert _check_readable(latent_plots.sensitivity_heatmaps({"GDM-F": mat, "k = 1": mat})) == 2
    m = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], index=["r1", "r2"], columns=["c1", "c2"])
    assert _check_readable(latent_plots.grid_heatmap(m, m / 10, "rows", "cols", "T2", "FD")) == 1
    w = pd.DataFrame({"model": ["a", "a", "prior", "prior"], "band": ["lo", "hi"] * 2,
                      "cov_ratio": [5.0, 2.0, 1.0, 1.1], "ks_reject": [0.5, 0.2, 0.01, 0.0]})
    assert _check_readable(latent_plots.whiteness_bars(w)) == 2
    assert _check_readable(latent_plots.whiteness_bars(w.assign(mean_sq=[0.1, 0.9, 1.0, 1.0]))) == 3
    # 12 models (notebook 04's Remark 4.1): every legend entry has its own colour (the cycle repeats after 10)
    many = pd.concat([w.assign(model=[f"m{i}", f"m{i}", f"m{i}b", f"m{i}b"]) for i in range(6)])
    fig = latent_plots.whiteness_bars(many)
    handles, _ = fig.axes[0].get_legend_handles_labels()
    import matplotlib.colors as mcolors

    colours = {mcolors.to_hex(h.patches[0].get_facecolor()) for h in handles}
    assert len(handles) == 12 and len(colours) == 12
    ex = pd.DataFrame({"model": ["a", "b"], "element": ["(0, 0, 0)"] * 2, "share": [0.8, 0.4],
                       "main factor": ["hue", "x"]})
    assert _check_readable(latent_plots.exclusivity_bars(ex, 0.25)) == 1
    plt.close("all")


def test_interval_steps_proportional_and_at_least_one():
    iv = schedules.gdm_intervals([0.1, 0.2])  # generated first: [0.2, 1], then [0.1, 0.2], [0, 0.1]
    # lengths 0.8, 0.1, 0.1: one step each, the other 9 split 7.2, 0.9, 0.9 -> 7, 0, 0 + largest remainders
    assert latents.interval_steps(iv, 12) == [8, 2, 2]
    assert latents.interval_steps(schedules.uniform_intervals(3), 12) == [4, 4, 4]
    assert latents.interval_steps(iv, 3) == [1, 1, 1]
    with pytest.raises(ValueError, match="nfe must be"):
        latents.interval_steps(iv, 2)


def test_generation_intervals_with_equal_steps_give_the_same_samples(basis):
    """The network sees only A(t): inside a group's interval dχ_j/dA_j = −u_j, whatever its length."""
    from gdmkit import nets

    g = latents.paper_bands(basis)
    torch.manual_seed(0)
    net = nets.unet_preset("smoke", 3, 16)
    torch.nn.init.normal_(net.conv_out.weight, std=0.02)  # not the zero output of a fresh U-Net
    z = torch.randn(2, *SHAPE, generator=_gen(0))
    out = []
    for b in ([0.1, 0.2], [0.6, 0.8]):
        sched = schedules.GroupwiseSchedule(g, schedules.gdm_intervals(b))
        path = paths.DiagonalPath(basis, sched)
        out.append(sampling.generate(path, net, 2, sched.time_grid([2, 2, 2]), latents=z))
    assert (out[0] - out[1]).abs().max() < 1e-4
    assert (out[0] - z).abs().max() > 1e-3  # the network did move the samples


def test_band_locality_exact_and_leaky(basis):
    data = _gaussian(basis)
    g = latents.paper_bands(basis)
    codec = _oracle_codec(basis, g, 12, data)
    z = torch.randn(4, *SHAPE, generator=_gen(0))
    loc = latents.band_locality(codec, z, g, _gen(1))
    assert list(loc["band"]) == [0, 1, 2] and math.isnan(loc["before"][0]) and math.isnan(loc["after"][2])
    assert (loc["before / inside"][1:] < 1e-5).all() and (loc["after / inside"][:2] < 1e-5).all()

    class Leaky:  # decodes the latents through a fixed mixing of all components: every band moves all
        path = codec.path

        def decode(self, z):
            return basis.from_coeffs(z + z.flatten(1).sum(1).reshape(-1, 1, 1, 1) / 10)
    leak = latents.band_locality(Leaky(), z, g, _gen(1))
    assert (leak["before / inside"][1:] > 0.05).all()
