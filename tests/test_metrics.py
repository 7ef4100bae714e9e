"""Tests for gdmkit.metrics: closed forms, hand computations, the labelled fallback without weights."""
from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from gdmkit import data as D
from gdmkit import features as Fe
from gdmkit import metrics as M


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- energy distance
def test_energy_distance_hand_computation_and_point_masses():
    x = torch.randn(7, 3, generator=gen(1), dtype=torch.float64)
    y = torch.randn(5, 3, generator=gen(2), dtype=torch.float64) + 0.5
    dist = lambda a, b: sum(float((ai - bj).norm()) for ai in a for bj in b)  # noqa: E731
    v = 2 * dist(x, y) / 35 - dist(x, x) / 49 - dist(y, y) / 25
    u = 2 * dist(x, y) / 35 - dist(x, x) / 42 - dist(y, y) / 20
    assert math.isclose(M.energy_distance(x, y), v, rel_tol=1e-9)
    assert math.isclose(M.energy_distance(x, y, unbiased=True), u, rel_tol=1e-9)
    assert M.energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    # 1-D point masses a, b: D^2 = 2|a - b|
    assert M.energy_distance(torch.full((4, 1), 0.3), torch.full((6, 1), -1.2)) == pytest.approx(3.0)
    shifts = [M.energy_distance(x, x + s) for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(shifts, shifts[1:], strict=False))
    with pytest.raises(ValueError, match="at least 2"):
        M.energy_distance(x[:1], y, unbiased=True)


# ----------------------------------------------------------------------------- sliced Wasserstein
def test_sliced_wasserstein_exact_1d():
    assert M.sliced_wasserstein(torch.full((3, 1), 2.0), torch.full((5, 1), -0.5)) == pytest.approx(2.5)
    x = torch.randn(50, 1, generator=gen(3), dtype=torch.float64)
    y = torch.randn(50, 1, generator=gen(4), dtype=torch.float64)
    ref = ((x.sort(0).values - y.sort(0).values) ** 2).mean().sqrt()
    assert M.sliced_wasserstein(x, y) == pytest.approx(float(ref), rel=1e-9)
    # unequal sizes: Q_x = 0 | 1 at u=1/2, Q_y = 0 | 0.5 | 1 at u=1/3, 2/3 -> W2^2 = 2 * (1/6) * 0.25
    assert M.sliced_wasserstein(torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [0.5], [1.0]])) == \
        pytest.approx(math.sqrt(1 / 12))
    # replicating each sample leaves the empirical measure (and the distance) unchanged
    a, b = torch.randn(4, 1, generator=gen(5)), torch.randn(6, 1, generator=gen(6))
    rep = M.sliced_wasserstein(a.repeat(6, 1), b.repeat(4, 1))
    assert M.sliced_wasserstein(a, b) == pytest.approx(rep, rel=1e-9)


def test_sliced_wasserstein_gaussians_and_projections():
    n = 20000
    x = 0.3 + 0.5 * torch.randn(n, 1, generator=gen(7))
    y = -0.4 + 1.2 * torch.randn(n, 1, generator=gen(8))
    assert M.sliced_wasserstein(x, y) == pytest.approx(math.sqrt(0.7**2 + 0.7**2), rel=0.02)
    # d-dim point masses: SW^2 = E[(θ·(a-b))^2] = |a-b|^2 / d
    a, b = torch.zeros(3, 4), torch.tensor([[1.0, 2.0, 0.0, 2.0]]).expand(2, 4)
    sw = M.sliced_wasserstein(a, b, n_proj=4000, generator=gen(9))
    assert sw == pytest.approx(3.0 / 2.0, rel=0.05)
    assert sw == M.sliced_wasserstein(a, b, n_proj=4000, generator=gen(9))
    z = torch.randn(200, 2, generator=gen(10))
    assert M.sliced_wasserstein(z, z, generator=gen(0)) == pytest.approx(0.0, abs=1e-12)
    d = [M.sliced_wasserstein(z, z + s, generator=gen(0)) for s in (0.2, 0.5, 1.0)]
    assert d[0] < d[1] < d[2]
    with pytest.raises(ValueError, match="dimension"):
        M.sliced_wasserstein(z, torch.zeros(3, 3))


# ----------------------------------------------------------------------------- Fréchet distance
def test_frechet_distance_closed_forms():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    ref = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())  # 5 + 4 + 1
    assert M.frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(ref)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen(11), dtype=torch.float64))
    ca, cb = Q @ torch.diag(a.double()) @ Q.T, Q @ torch.diag(b.double()) @ Q.T  # commuting
    assert M.frechet_distance(mu1, ca, mu2, cb) == pytest.approx(ref, rel=1e-9)
    assert M.frechet_distance(mu1, ca, mu1, ca) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_scipy_sqrtm():
    import scipy.linalg

    A, B = torch.randn(5, 5, generator=gen(12), dtype=torch.float64), torch.randn(5, 5, generator=gen(13),
                                                                                   dtype=torch.float64)
    c1, c2 = A @ A.T, B @ B.T + 0.1 * torch.eye(5, dtype=torch.float64)
    mu1 = torch.randn(5, generator=gen(14), dtype=torch.float64)
    mu2 = torch.randn(5, generator=gen(15), dtype=torch.float64)
    cross = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    ref = float(((mu1 - mu2) ** 2).sum()) + float(c1.trace() + c2.trace()) - 2 * cross.trace()
    assert M.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-8)


def _frechet_mp(f: Tensor, mu: Tensor, cov: Tensor) -> float:
    """The Fréchet distance of the samples' Gaussian to N(mu, cov) at 50 digits (mpmath): both square roots
    by symmetric eigendecomposition, negative round-off eigenvalues of the singular Σ₁ set to 0."""
    import mpmath as mp

    with mp.workdps(50):
        n, dim = f.shape
        F, C2 = mp.matrix(f.tolist()), mp.matrix(cov.tolist())
        m1 = [sum(F[i, j] for i in range(n)) / n for j in range(dim)]
        C1 = mp.matrix(dim, dim)
        for a in range(dim):
            for b in range(dim):
                C1[a, b] = sum((F[i, a] - m1[a]) * (F[i, b] - m1[b]) for i in range(n)) / (n - 1)
        e, V = mp.eigsy(C1)
        S1 = V * mp.diag([mp.sqrt(max(x, 0)) for x in e]) * V.T
        tr_sqrt = sum(mp.sqrt(max(x, 0)) for x in mp.eigsy(S1 * C2 * S1)[0])
        val = (sum((m1[j] - float(mu[j])) ** 2 for j in range(dim)) + sum(C1[i, i] + C2[i, i] for i in range(dim))
               - 2 * tr_sqrt)
        return float(val)


@pytest.mark.parametrize("n, dim", [(2, 7), (5, 12), (12, 12), (13, 12), (40, 12)])
def test_frechet_distance_to_is_exact_at_any_sample_size(n, dim):
    """The N × N route (N ≤ F) and the dense one (N > F) against a 50-digit evaluation of the definition,
    with a full-rank anisotropic target. Where N ≤ F the dense formula itself is off by ~1e-9 relative: the
    clamped round-off eigenvalues of the singular Σ₁ enter through their square roots."""
    f = torch.randn(n, dim, generator=gen(30), dtype=torch.float64) @ torch.randn(dim, dim, generator=gen(31),
                                                                                  dtype=torch.float64)
    B = torch.randn(dim, dim, generator=gen(32), dtype=torch.float64)
    mu = torch.randn(dim, generator=gen(33), dtype=torch.float64)
    cov = B @ B.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)
    ref = _frechet_mp(f, mu, cov)
    assert M.frechet_distance_to(f, mu, cov) == pytest.approx(ref, rel=1e-12)
    assert M.frechet_distance(*M.feature_stats(f), mu, cov) == pytest.approx(ref, rel=1e-6)
    # the samples' own Gaussian: distance 0
    assert M.frechet_distance_to(f, *M.feature_stats(f)) == pytest.approx(0.0, abs=1e-9 * ref)


def test_frechet_distance_to_refuses_one_sample_and_mismatched_shapes():
    with pytest.raises(ValueError, match="at least 2 samples"):
        M.frechet_distance_to(torch.zeros(1, 3), torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError, match="3 features"):
        M.frechet_distance_to(torch.zeros(4, 3), torch.zeros(2), torch.eye(2))


def test_sample_quality_fid_equals_torchmetrics_compute(tmp_path):
    """SampleQuality's FID (Inception features, then frechet_distance_to) against torchmetrics' own
    compute() on the same images, with stand-in Inception weights in the real file format."""
    from gdmkit import standins

    w = standins.write_inception_weights(tmp_path / "inception.pth")
    real = torch.rand(6, 3, 16, 16, generator=gen(34)) * 2 - 1
    fake = (real[:5] + 0.3 * torch.randn(5, 3, 16, 16, generator=gen(35))).clamp(-1, 1)
    q = M.SampleQuality(real, inception_weights=w)
    fid = Fe.inception_fid(w)
    Fe.fid_update(fid, real, True)
    Fe.fid_update(fid, fake, False)
    ref = float(fid.compute())
    assert q.name == "FID" and ref > 0 and q(fake).value == pytest.approx(ref, rel=1e-5)
    assert q(real).value == pytest.approx(0.0, abs=1e-6 * ref)


# ----------------------------------------------------------------------------- classifier features
@pytest.fixture(scope="module")
def digit_classifier():
    x, y = D.digits(split="train")
    return Fe.train_classifier(x, y, steps=60, dataset="digits", generator=gen(16))


def test_classifier_frechet_distance_is_labelled(digit_classifier):
    xt, _ = D.digits(split="test")
    xtr, _ = D.digits(split="train")
    same = M.frechet_feature_distance(xt, xt, digit_classifier)
    assert same.name == "FD_classifier[digits]" and "FID" not in same.name
    assert same.value == pytest.approx(0.0, abs=1e-6)
    near = M.frechet_feature_distance(xtr, xt, digit_classifier).value
    noise = (torch.rand(360, 1, 8, 8, generator=gen(17)) * 2 - 1)
    far = M.frechet_feature_distance(xt, noise, digit_classifier).value
    assert near < far


def test_sample_quality_caches_the_reference(digit_classifier):
    xt, _ = D.digits(split="test")
    xtr, _ = D.digits(split="train")
    q = M.SampleQuality(xt, features=digit_classifier)
    assert q.name == "FD_classifier[digits]"
    for fake in (xtr[:300], xtr[300:600]):                      # same numbers as the one-shot function
        once = M.frechet_feature_distance(xt, fake, digit_classifier).value
        assert q(fake).value == pytest.approx(once, rel=1e-9)


def test_separable_error_bars():
    assert M.separable((10.0, 1.0), (13.0, 1.5))               # |Δ| = 3 > 2.5
    assert not M.separable((10.0, 1.0), (12.0, 1.5))           # bars overlap
    assert not M.separable((10.0, 1.0), (13.0, 1.5), k=2.0)


def test_sample_quality_without_weights_is_a_labelled_fallback(tmp_path):
    """No Inception weights (a missing file is never searched past): the Fréchet distance in the given
    features, named after them; without features a ValueError saying what to pass."""
    x = torch.rand(6, 3, 4, 4, generator=gen(18), dtype=torch.float64) * 2 - 1
    y = x + 0.1 * torch.randn(6, 3, 4, 4, generator=gen(19), dtype=torch.float64)
    missing = tmp_path / "no-inception.pth"
    with pytest.raises(ValueError, match="train_classifier"):
        M.sample_quality(x, x, inception_weights=missing)
    q = M.sample_quality(x, y, features=Fe.IdentityFeatures(), inception_weights=missing)
    ref = M.frechet_distance_to(y.reshape(6, -1), *M.feature_stats(x.reshape(6, -1)))
    assert q.name == "FD_pixels" and q.value == pytest.approx(ref, rel=1e-9) and q.value > 0
    off = M.SampleQuality(x, features=Fe.IdentityFeatures(), use_inception=False)
    assert off.name == "FD_pixels" and off(y).value == pytest.approx(ref, rel=1e-9)


# ----------------------------------------------------------------------------- perceptual variance
def test_perceptual_variance_identity_and_linear_features():
    x = torch.randn(6, 1, 2, 2, generator=gen(19), dtype=torch.float64)
    flat = x.reshape(6, 4)
    hand = sum(float(((flat[i] - flat.mean(0)) ** 2).sum()) for i in range(6)) / 6
    pv = M.perceptual_variance(x, Fe.IdentityFeatures())
    assert pv.name == "PV_pixels" and pv.value == pytest.approx(hand, rel=1e-9)

    class Linear:
        name = "linear"
        A = torch.randn(3, 4, generator=gen(20), dtype=torch.float64)

        def __call__(self, z):
            return z.reshape(z.shape[0], -1) @ self.A.T

    cov = torch.cov(flat.T, correction=0)  # tr(A Σ Aᵀ) with the biased covariance
    ref = float(torch.trace(Linear.A @ cov @ Linear.A.T))
    assert M.perceptual_variance(x, Linear()).value == pytest.approx(ref, rel=1e-6)


# ----------------------------------------------------------------------------- factor sensitivity
def linear_setup():
    z = torch.randn(32, 6, generator=gen(21))
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    W = torch.randn(6, 5, generator=gen(22))  # decode: latents -> "images" (N, 5)
    P = torch.randn(5, 3, generator=gen(23))  # factor_fn: images -> factors (N, 3)
    return z, groups, (lambda c: c @ W), (lambda im: im @ P), W @ P


def test_factor_sensitivity_linear_exact():
    z, groups, decode, factor_fn, Mx = linear_setup()
    shift = lambda zz, mask, g: zz + 1.0  # noqa: E731  # only the masked group is kept shifted
    S = M.factor_sensitivity(decode, z, groups, factor_fn, resample=shift, factor_names=["a", "b", "c"])
    assert S.dims == ("factor", "group") and list(S.coords["factor"].values) == ["a", "b", "c"]
    for g in range(3):  # Δfactor = 1ᵀ_g (W P): the sum of the group's rows
        ref = Mx[groups == g].sum(0).abs().double()
        assert torch.allclose(torch.from_numpy(S.sel(group=g).values), ref, rtol=1e-5)
    # "normal" resampling: re-derive with the same draws, in group order
    Sn = M.factor_sensitivity(decode, z, groups, factor_fn, generator=gen(24))
    g2 = gen(24)
    for g in range(3):
        new = torch.where(groups == g, torch.randn(z.shape, generator=g2), z)
        ref = ((new - z) @ Mx).abs().mean(0).double()
        assert torch.allclose(torch.from_numpy(Sn.sel(group=g).values), ref, rtol=1e-5)


def test_factor_sensitivity_block_structure_and_errors():
    z, groups, _, _, _ = linear_setup()
    S = M.factor_sensitivity(lambda c: c, z, groups, lambda im: im.reshape(-1, 3, 2).sum(2),
                             resample="permute", generator=gen(25))
    off = S.values[~torch.eye(3, dtype=torch.bool).numpy()]
    assert (off == 0).all() and (S.values.diagonal() > 0).all()
    with pytest.raises(ValueError, match="latent component"):
        M.factor_sensitivity(lambda c: c, z, groups[:4], lambda im: im)
    with pytest.raises(ValueError, match="resample"):
        M.factor_sensitivity(lambda c: c, z, groups, lambda im: im, resample="uniform")
    with pytest.raises(ValueError, match="factor_names"):
        M.factor_sensitivity(lambda c: c, z, groups, lambda im: im, factor_names=["x"])


def test_factor_sensitivity_on_procedural_shapes():
    """Latent groups drive x, y, scale, hue of a circle; the moment estimates find which is which."""
    def decode(z):
        f = D.ShapeFactors(torch.ones(len(z), dtype=torch.long), 0.5 + 0.08 * torch.tanh(z[:, 0]),
                           0.5 + 0.08 * torch.tanh(z[:, 1]), 0.18 + 0.05 * torch.tanh(z[:, 2]),
                           0.4 + 0.15 * torch.tanh(z[:, 3]))
        return D.render_shapes(f, 32)

    z = torch.randn(48, 4, generator=gen(26))
    S = M.factor_sensitivity(decode, z, torch.arange(4), M.estimate_shape_factors, generator=gen(27),
                             factor_names=["x", "y", "size", "hue_cos", "hue_sin"])
    assert [int(S.sel(factor=f).argmax("group")) for f in ("x", "y", "size", "hue_cos")] == [0, 1, 2, 3]
    assert float(S.sel(factor="x", group=[1, 2, 3]).max()) < 0.1 * float(S.sel(factor="x", group=0))


def test_estimate_shape_factors_recovers_centroid_size_and_hue():
    """Moments of the coverage α = max_c (x+1)/2: centroid within half a pixel, √(area) of the analytic
    area, and the hue as (cos 2πh, sin 2πh)."""
    size = 32
    x, f = D.shapes(64, size, generator=gen(3))
    est = M.estimate_shape_factors(x)
    assert est.shape == (64, 5)
    assert (est[:, 0] - f.x).abs().max() < 0.5 / size and (est[:, 1] - f.y).abs().max() < 0.5 / size
    s = f.scale.double()
    area = torch.stack([4 * s**2, math.pi * s**2, 3 * math.sqrt(3) / 4 * s**2], 1)[torch.arange(64), f.shape]
    assert torch.allclose(est[:, 2].double(), area.sqrt(), rtol=0.02)
    assert torch.allclose(est[:, 3], torch.cos(2 * math.pi * f.hue), atol=0.02)
    assert torch.allclose(est[:, 4], torch.sin(2 * math.pi * f.hue), atol=0.02)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        M.estimate_shape_factors(x[:, :1])


# ----------------------------------------------------------------------------- group locality
def test_group_locality():
    x = torch.randn(2, 3, 4, 4, generator=gen(28))
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True
    loc = M.group_locality(x, x + 0.5 * mask, mask)
    assert loc.inside == pytest.approx(0.5) and loc.outside == 0.0 and loc.ratio == 0.0
    pert = x.clone()
    pert[..., 0, 0] += 1.0  # inside: 1 of 4 pixels changes by 1
    pert[..., 3, 3] -= 3.0  # outside: 1 of 12 changes by 3
    loc = M.group_locality(x, pert, mask)
    assert loc.inside == pytest.approx(0.25) and loc.outside == pytest.approx(0.25)
    with pytest.raises(ValueError, match="some but not all"):
        M.group_locality(x, pert, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="differ in shape"):
        M.group_locality(x, pert[:1], mask)


def test_order_locality_regions_and_prop33_with_the_exact_oracle():
    """Hand case: decode = identity moves only the varied group. Exact oracle of a correlated Gaussian,
    Euler on the GDM block path: the groups generated before j do not move (Prop. 3.3), those after j do
    (generated conditionally on j); under the scalar schedule the same regions all move."""
    from gdmkit import groupings as G
    from gdmkit import paths as P
    from gdmkit import sampling as Sa
    from gdmkit import schedules as S
    from gdmkit.bases import Pixel
    from gdmkit.oracles import GaussianMixture

    shape = (1, 4, 4)
    g = G.blocks(shape, 2)
    z0, z1 = (torch.randn(3, *shape, generator=gen(s)) for s in (40, 41))
    rows = M.order_locality(lambda z: z, z0, z1, g)
    assert [r["varied group"] for r in rows] == [1, 2, 3, 4]
    for j, r in enumerate(rows):
        m = g.mask(j).expand(3, *shape)
        assert r["inside"] == pytest.approx(float((z1 - z0).abs()[m].double().mean()))
        assert r["outside"] == 0.0 and r["outside / inside"] == 0.0
        assert (math.isnan(r["before"]) if j == 0 else r["before"] == 0.0)
        assert (math.isnan(r["after"]) if j == 3 else r["after"] == 0.0)
    A = torch.randn(16, 16, generator=gen(42), dtype=torch.float64)
    gm = GaussianMixture(torch.ones(1), 0.3 * torch.ones(1, *shape), (A @ A.T / 16 + 0.1 * torch.eye(16))[None])
    for gr, local in ((g, True), (G.single(shape), False)):
        sched = S.GroupwiseSchedule(gr)
        path = P.DiagonalPath(Pixel(shape), sched)
        grid = sched.time_grid(Sa.per_group_steps(gr.k, 8))
        rows = M.order_locality(lambda z: Sa.generate(path, gm.denoiser(path), len(z), grid, latents=z),
                                z0, z1, g)
        before = [r["before / inside"] for r in rows[1:]]
        after = [r["after / inside"] for r in rows[:-1]]
        if local:
            assert max(before) < 1e-6 and min(after) > 1e-2
        else:
            assert min(before) > 1e-2 and min(after) > 1e-2
    with pytest.raises(ValueError, match="event shape"):
        M.order_locality(lambda z: z, z0[:, :, :2], z1[:, :, :2], g)


def test_order_locality_decodes_every_set_together_in_batches():
    """The base and the k varied sets go through ``decode`` together, in calls of at most ``batch_size``
    latents; the rows do not depend on how they are split (each example is decoded on its own)."""
    import pandas as pd

    from gdmkit import groupings as G

    shape = (1, 4, 4)
    g = G.blocks(shape, 2)  # k = 4: 5 sets of N = 3
    z0, z1 = (torch.randn(3, *shape, generator=gen(s)) for s in (43, 44))
    w = torch.randn(shape, generator=gen(45))
    sizes = []

    def decode(z):  # per example, nonlinear: mixes each example's own components only
        sizes.append(len(z))
        return torch.tanh(z * w + z.flatten(1).sum(1).view(-1, 1, 1, 1))

    whole = M.order_locality(decode, z0, z1, g)
    assert sizes == [15]
    sizes.clear()
    split = M.order_locality(decode, z0, z1, g, batch_size=4)
    assert sizes == [4, 4, 4, 3]
    pd.testing.assert_frame_equal(pd.DataFrame(split), pd.DataFrame(whole), check_exact=True)  # NaN = NaN
    # a decode that loses examples is named, not zipped silently against the wrong latents
    with pytest.raises(ValueError, match="one sample per latent"):
        M.order_locality(lambda z: z[:-1], z0, z1, g)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        M.order_locality(decode, z0, z1, g, batch_size=0)


def _linear_model(A: torch.Tensor, shift: float = 0.0):
    from gdmkit.paths import Prediction

    def model(chi_t, t):
        x_hat = chi_t @ A.T.to(chi_t)
        return Prediction(x_hat, chi_t - x_hat, x_hat + shift)
    return model


def test_denoiser_jacobian_of_a_linear_denoiser_is_its_matrix_in_absolute_value():
    from gdmkit import metrics as M

    A = torch.tensor([[0.5, -2.0, 0.0], [1.0, 0.0, 3.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    chi = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    J = M.denoiser_jacobian(_linear_model(A), chi, torch.full((7,), 0.3, dtype=torch.float64))
    torch.testing.assert_close(J, A.abs())


def test_denoiser_jacobian_shows_prop_3_3_for_the_oracle():
    # GDM Prop. 3.3: for t > t_end of x2's group the optimal denoiser ignores (x_t)_2 exactly; under the
    # scalar schedule it does not.
    from gdmkit import bases, groupings, metrics as M, oracles, paths, schedules

    mix = oracles.GaussianMixture(torch.ones(2), torch.tensor([[1.0, 1.0], [-1.0, -1.0]]),
                                  0.1 * torch.eye(2).expand(2, 2, 2))
    g = torch.Generator().manual_seed(1)
    x0, z = mix.sample(64, g).double(), torch.randn(64, 2, generator=g, dtype=torch.float64)
    t = torch.full((64,), 0.75, dtype=torch.float64)
    J = {}
    for name, grouping in (("gdm", groupings.per_element((2,))), ("scalar", groupings.single((2,)))):
        path = paths.DiagonalPath(bases.Pixel((2,)).double(), schedules.GroupwiseSchedule(grouping))
        J[name] = M.denoiser_jacobian(mix.denoiser(path), path.noise(x0, t, z), t)
    assert J["gdm"][:, 1].max() <= 1e-12 < J["gdm"][0, 0]
    assert J["scalar"][:, 1].max() > 0.1


def test_group_jacobian_re_derives_block_norms_of_a_linear_denoiser():
    """Linear denoiser x̂ = A χ_t on (1, 2, 2), two row groups: J[a, b] = ‖A[S_a, S_b]‖_F exactly;
    with one component per group it is |A| (denoiser_jacobian's answer)."""
    from gdmkit import groupings as G

    A = torch.randn(4, 4, generator=gen(5), dtype=torch.float64)
    chi = torch.randn(3, 1, 2, 2, generator=gen(6), dtype=torch.float64)
    t = torch.full((3,), 0.4, dtype=torch.float64)

    def model(c, t):
        return _linear_model(A)(c.reshape(len(c), -1), t)

    g = G.bottom_to_top((1, 2, 2), 2)  # bottom row first: group of each pixel, row-major
    J = M.group_jacobian(model, chi, t, g)
    idx = [g.group.reshape(-1) == a for a in range(2)]
    want = torch.tensor([[float(A[idx[a]][:, idx[b]].norm()) for b in range(2)] for a in range(2)],
                        dtype=torch.float64)
    torch.testing.assert_close(J, want)
    torch.testing.assert_close(M.group_jacobian(model, chi, t, g, outputs=[1]), want[1:])
    # Hutchinson probes: unbiased for the squared block norms (sd of the mean of 4000 probes: ~2 %)
    est = M.group_jacobian(model, chi, t, g, probes=4000, generator=gen(7))
    torch.testing.assert_close(est.square(), want.square(), rtol=0.08, atol=0.0)
    assert not torch.allclose(M.group_jacobian(model, chi, t, g, probes=1, generator=gen(8)), want)
    torch.testing.assert_close(M.group_jacobian(model, chi, t, G.per_element((1, 2, 2))), A.abs())
    with pytest.raises(ValueError, match="event shape"):
        M.group_jacobian(model, chi.reshape(3, 4), t, g)


def test_group_jacobian_shows_prop_3_3_for_the_exact_oracle_on_image_blocks():
    """At a time inside group j's interval, the exact denoiser's columns of the groups generated after j
    (pure noise) are zero; the active group's row reads itself and the groups generated before it."""
    from gdmkit import groupings as G
    from gdmkit import paths as P
    from gdmkit import schedules as S
    from gdmkit.bases import Pixel
    from gdmkit.oracles import GaussianMixture

    shape = (1, 4, 4)
    g = G.blocks(shape, 2)
    A = torch.randn(16, 16, generator=gen(43), dtype=torch.float64)
    gm = GaussianMixture(torch.ones(1), 0.3 * torch.ones(1, *shape), (A @ A.T / 16 + 0.1 * torch.eye(16))[None])
    path = P.DiagonalPath(Pixel(shape).double(), S.GroupwiseSchedule(g))
    x0 = gm.sample(8, gen(44)).double()
    for j in range(4):
        lo, hi = (float(v) for v in path.schedule.intervals[j])
        t = torch.full((8,), (lo + hi) / 2, dtype=torch.float64)
        chi_t = path.noise(x0, t, torch.randn(x0.shape, generator=gen(j), dtype=torch.float64))
        J = M.group_jacobian(gm.denoiser(path), chi_t, t, g)
        if j < 3:
            assert J[:, j + 1:].max() <= 1e-12  # Prop. 3.3: the groups still pure noise
            est = M.group_jacobian(gm.denoiser(path), chi_t, t, g, probes=3, generator=gen(9))
            assert est[:, j + 1:].max() <= 1e-12 < est[j, j]  # a zero block stays zero under probes
            assert J[j + 1:, j].min() > 1e-3  # ... while the active group informs their prediction
        assert J[j, : j + 1].min() > 1e-3  # the active group reads itself and the groups before it


def test_velocity_error_is_zero_against_itself_and_the_squared_offset_otherwise():
    from gdmkit import metrics as M

    A = torch.eye(2, dtype=torch.float64) * 0.5
    chi = torch.randn(5, 2, generator=torch.Generator().manual_seed(2))
    t = torch.full((5,), 0.5)
    same = M.velocity_error(_linear_model(A), _linear_model(A), chi, t)
    assert torch.equal(same, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(M.velocity_error(_linear_model(A, shift=0.25), _linear_model(A), chi, t),
                               torch.full((2,), 0.0625, dtype=torch.float64))
