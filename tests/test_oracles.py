"""Tests for gdmkit.oracles: exact posterior means against brute-force integration, Tweedie's formula,
GDM Prop. 3.3 (the optimal denoiser ignores groups not yet generated), the Gaussian random field
against its dense circulant covariance, and consistency checks."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from gdmkit import groupings as G
from gdmkit import paths as P
from gdmkit import schedules as S
from gdmkit.bases import Fourier, Orthogonal, Pixel
from gdmkit.oracles import DiagonalGaussian, GaussianMixture, GaussianRandomField, grf_spectrum

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _spd(d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    A = torch.randn(d, d, generator=_gen(seed), dtype=F64)
    return scale * (A @ A.T / d + 0.2 * torch.eye(d, dtype=F64))


def _mixture(d: int, K: int = 3, seed: int = 0) -> GaussianMixture:
    g = _gen(seed)
    weights = torch.rand(K, generator=g, dtype=F64) + 0.2
    means = 2.0 * torch.randn(K, d, generator=g, dtype=F64)
    covs = torch.stack([_spd(d, seed + 10 + k, scale=0.3) for k in range(K)])
    return GaussianMixture(weights, means, covs)


def _paths_2d():
    basis = Orthogonal.random(2, generator=_gen(5))
    scale = torch.tensor([1.7, 0.6], dtype=F64)
    log_var = torch.tensor([0.4, -0.8], dtype=F64)
    # float64 schedules, so that the oracle and the quadrature share exact coefficients
    return {
        "gdm_pixel": P.DiagonalPath(Pixel((2,)).double(), S.GroupwiseSchedule(G.single((2,))).double()),
        "gdm_rotated_scaled": P.DiagonalPath(
            basis, S.GroupwiseSchedule(G.per_element((2,)), torch.tensor([[0.3, 1.0], [0.0, 0.6]])).double(),
            scale=scale),
        "vp_rotated_scaled": P.DiagonalPath(basis, S.LinearGamma(log_var, -log_var, a=1.4).double(),
                                            scale=scale),
    }


def _log_gaussian_2d(x0, x1, mean, cov):
    """log N(x; μ, Σ) in 2-D written out with the explicit 2 × 2 inverse; x0, x1 are the coordinates."""
    det = cov[0, 0] * cov[1, 1] - cov[0, 1] ** 2
    r0, r1 = x0 - mean[0], x1 - mean[1]
    quad = (cov[1, 1] * r0 ** 2 - 2 * cov[0, 1] * r0 * r1 + cov[0, 0] * r1 ** 2) / det
    return -0.5 * (quad + torch.log(det) + 2 * math.log(2 * math.pi))


def _quadrature_posterior_mean(gm: GaussianMixture, path: P.DiagonalPath, chi_t: torch.Tensor, t: float,
                               n: int = 181, half_width: float = 12.0) -> torch.Tensor:
    """E[χ | χ_t] = ∫ χ p_χ(χ) N(χ_t; αχ, σ²) dχ / ∫ p_χ(χ) N(χ_t; αχ, σ²) dχ on a 2-D grid.

    p_χ(χ) ∝ p_x(U S χ), the mixture density in data space written out by hand. The integrands are
    smooth and decay fast, so the uniform-grid sum converges spectrally (181 points per axis agree
    with 801 to ~1e-9 here). Each tensor stays below 32768 elements, torch's grain for splitting
    work over threads: on a busy 2-core machine the thread handoffs cost more than the sums.
    """
    U = path.basis.matrix()
    s = torch.ones(2, dtype=F64) if path.scale is None else path.scale
    ax = torch.linspace(-half_width, half_width, n, dtype=F64)
    c0, c1 = (g.reshape(-1) for g in torch.meshgrid(ax, ax, indexing="ij"))    # χ points
    x0 = U[0, 0] * s[0] * c0 + U[0, 1] * s[1] * c1                               # x = U S χ
    x1 = U[1, 0] * s[0] * c0 + U[1, 1] * s[1] * c1
    log_px = torch.logsumexp(torch.stack([gm.weights[k].log()
                                          + _log_gaussian_2d(x0, x1, gm.means[k], gm.covs[k])
                                          for k in range(len(gm.weights))]), 0)
    c = path.schedule.marginal(torch.tensor([t], dtype=F64))
    a, sg = c.alpha[0], c.sigma[0]
    out = []
    for y in chi_t:
        log_lik = -0.5 * (((y[0] - a[0] * c0) / sg[0]) ** 2 + ((y[1] - a[1] * c1) / sg[1]) ** 2)
        w = torch.softmax(log_px + log_lik, 0)
        out.append(torch.stack([(w * c0).sum(), (w * c1).sum()]))
    return torch.stack(out)


@pytest.mark.parametrize("name,t", [("gdm_pixel", 0.4), ("gdm_rotated_scaled", 0.45),
                                    ("gdm_rotated_scaled", 0.8), ("vp_rotated_scaled", 0.5)])
def test_mixture_posterior_mean_matches_quadrature(name, t):
    gm = _mixture(2, K=3, seed=1)
    path = _paths_2d()[name]
    c = path.schedule.marginal(torch.tensor([t], dtype=F64))
    assert c.alpha.dtype == F64
    assert bool((c.sigma > 0.2).all()), "quadrature needs a likelihood wider than the grid step"
    chi_t = 1.5 * torch.randn(4, 2, generator=_gen(2), dtype=F64)
    exact = gm.denoiser(path)(chi_t, torch.full((4,), t, dtype=F64)).x_hat
    brute = _quadrature_posterior_mean(gm, path, chi_t, t)
    torch.testing.assert_close(exact, brute, atol=1e-8, rtol=1e-8)


def test_in_coords_is_M_mu_and_M_sigma_Mt():
    gm = _mixture(3, K=2, seed=3)
    basis = Orthogonal.random(3, generator=_gen(4))
    scale = torch.tensor([0.5, 2.0, 1.3], dtype=F64)
    path = P.DiagonalPath(basis, S.LinearGamma(torch.zeros(3), torch.zeros(3), a=1.0), scale=scale)
    M = torch.diag(1 / scale) @ basis.matrix().T                  # χ = S⁻¹Uᵀx
    cc = gm.in_coords(path)
    torch.testing.assert_close(cc.means, gm.means @ M.T)
    torch.testing.assert_close(cc.covs, M @ gm.covs @ M.T)
    torch.testing.assert_close(cc.weights, gm.weights)


def test_posterior_mean_shared_times_factor_once_and_agree_with_per_example():
    """A batch at one time takes the shared path (one factorisation, cached by (α, σ)); a batch at mixed
    times the per-example path; both equal the posterior mean of each example alone (B = 1)."""
    gm = _mixture(4, K=2, seed=11)
    path = P.DiagonalPath(Pixel((4,)).double(), S.GroupwiseSchedule(G.per_element((4,))).double())
    cc = gm.in_coords(path)
    chi_t = torch.randn(6, 4, generator=_gen(12), dtype=F64)
    for t in (torch.full((6,), 0.6, dtype=F64), torch.linspace(0.1, 0.9, 6, dtype=F64)):
        c = path.schedule.marginal(t)
        factors = {}
        batch = cc.posterior_mean(chi_t, c.alpha, c.sigma, factors)
        alone = torch.cat([cc.posterior_mean(chi_t[i:i + 1], c.alpha[i:i + 1], c.sigma[i:i + 1])
                           for i in range(6)])
        torch.testing.assert_close(batch, alone, atol=1e-12, rtol=1e-12)
        assert len(factors) == (1 if bool((t == t[0]).all()) else 0)
    first = cc.posterior_mean(chi_t, c.alpha[:1].expand(6, -1), c.sigma[:1].expand(6, -1), factors)
    again = cc.posterior_mean(chi_t, c.alpha[:1].expand(6, -1), c.sigma[:1].expand(6, -1), factors)
    assert len(factors) == 1 and torch.equal(again, first)  # the second call reused the cached factor


def test_posterior_mean_satisfies_tweedie():
    """χ̂ = (χ_t + σ² ∇log p_t(χ_t))/α per component, with p_t the exact noised mixture
    χ_t | k ~ N(α μ̄_k, D_α Σ̄_k D_α + D_σ²) differentiated by autograd; and score() = −ẑ/σ."""
    gm = _mixture(3, K=2, seed=6)
    basis = Orthogonal.random(3, generator=_gen(7))
    log_var = torch.tensor([0.3, -0.5, -1.2], dtype=F64)
    path = P.DiagonalPath(basis, S.LinearGamma(log_var, -log_var, a=0.6),
                          scale=torch.tensor([1.2, 0.8, 1.0], dtype=F64))
    cc = gm.in_coords(path)
    t = torch.full((5,), 0.45, dtype=F64)
    c = path.schedule.marginal(t)
    a, s = c.alpha[0].double(), c.sigma[0].double()
    chi_t = torch.randn(5, 3, generator=_gen(8), dtype=F64).requires_grad_(True)
    comps = [MultivariateNormal(a * cc.means[k], torch.diag(a) @ cc.covs[k] @ torch.diag(a)
                                + torch.diag(s ** 2)) for k in range(2)]
    logp = torch.logsumexp(torch.stack([cp.log_prob(chi_t) + cc.weights[k].log()
                                        for k, cp in enumerate(comps)]), 0)
    grad = torch.autograd.grad(logp.sum(), chi_t)[0]
    pred = gm.denoiser(path)(chi_t.detach(), t)
    torch.testing.assert_close(pred.x_hat, (chi_t.detach() + s ** 2 * grad) / a, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(P.score(pred, c), grad, atol=1e-6, rtol=1e-6)


def _gdm_6d():
    grouping = G.from_index_sets((6,), [[0, 3], [1, 4], [2, 5]])     # intervals [2/3,1], [1/3,2/3], [0,1/3]
    return grouping, P.DiagonalPath(Orthogonal.random(6, generator=_gen(9)), S.GroupwiseSchedule(grouping))


@pytest.mark.parametrize("t", [0.5, 0.6, 0.8, 0.95, 0.2])
def test_prop_3_3_oracle_ignores_groups_not_yet_generated(t):
    """GDM Prop. 3.3: for groups j with t_end_j < t, ∂x̂*/∂(x_t)_i = 0 for i ∈ S_j — exactly."""
    grouping, path = _gdm_6d()
    gm = _mixture(6, K=3, seed=12)
    model = gm.denoiser(path)
    tt = torch.tensor([t], dtype=F64)
    chi_t = torch.randn(1, 6, generator=_gen(13), dtype=F64)
    J = torch.autograd.functional.jacobian(lambda y: model(y, tt).x_hat[0], chi_t)[:, 0, :]   # (6, 6)
    t_end = path.schedule.intervals[:, 1]
    for j in range(grouping.k):
        cols = J[:, grouping.mask(j)]
        if t_end[j] < t:
            assert cols.abs().max().item() < 1e-12, (j, cols)
        else:
            assert cols.abs().max().item() > 1e-3, (j, cols)


def _assert_same_predictions(oracle_a, oracle_b, path, chi_t, t, tol):
    """Both oracles' denoisers give the same Prediction (every field) at χ_t (B, ...), times t (B,)."""
    t = torch.tensor(t, dtype=F64)
    for u, v in zip(oracle_a.denoiser(path)(chi_t, t), oracle_b.denoiser(path)(chi_t, t), strict=True):
        torch.testing.assert_close(u, v, atol=tol, rtol=tol)


def test_diagonal_gaussian_equals_a_one_component_mixture():
    basis = Orthogonal.random(4, generator=_gen(14))
    U = basis.matrix()
    mean = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=F64)
    var = torch.tensor([2.0, 0.3, 1.0, 0.05], dtype=F64)
    dg = DiagonalGaussian(basis, mean, var)
    gm = GaussianMixture(torch.ones(1), (U @ mean)[None], (U @ torch.diag(var) @ U.T)[None])
    x = torch.randn(6, 4, generator=_gen(15), dtype=F64)
    torch.testing.assert_close(dg.log_prob(x), gm.log_prob(x))
    scale = torch.tensor([1.4, 0.5, 1.0, 0.25], dtype=F64)
    paths = [P.DiagonalPath(basis, S.LinearGamma(var.log(), -var.log(), a=0.9).double(), scale=scale),
             P.DiagonalPath(basis, S.GroupwiseSchedule(G.from_index_sets((4,), [[1, 2], [0, 3]])).double())]
    for path in paths:
        chi_t = torch.randn(6, 4, generator=_gen(16), dtype=F64)
        _assert_same_predictions(dg, gm, path, chi_t, [0.05, 0.3, 0.5, 0.6, 0.9, 1.0], tol=1e-9)


def test_diagonal_gaussian_denoiser_closed_form():
    """χ̂ = μ + v α/(α² v + σ²)(χ_t − α μ) per component (Gaussian conjugacy), in χ = S⁻¹Uᵀx."""
    basis = Pixel((3,)).double()
    mean, var = torch.tensor([1.0, -2.0, 0.0], dtype=F64), torch.tensor([0.5, 3.0, 1.0], dtype=F64)
    scale = torch.tensor([2.0, 1.0, 0.5], dtype=F64)
    path = P.DiagonalPath(basis, S.LinearGamma(torch.zeros(3), torch.zeros(3), a=1.0), scale=scale)
    chi_t = torch.tensor([[0.3, 1.0, -2.0]], dtype=F64)
    t = torch.tensor([0.4], dtype=F64)
    c = path.schedule.marginal(t)
    a, s = c.alpha[0].double(), c.sigma[0].double()
    m, v = mean / scale, var / scale ** 2
    expected = m + v * a / (a ** 2 * v + s ** 2) * (chi_t - a * m)
    torch.testing.assert_close(DiagonalGaussian(basis, mean, var).denoiser(path)(chi_t, t).x_hat, expected)


def test_mixture_sampling_density_and_moments():
    gm = _mixture(2, K=3, seed=17)
    x = gm.sample(20000, generator=_gen(18))
    assert x.shape == (20000, 2) and x.dtype == torch.float32
    assert torch.equal(x, gm.sample(20000, generator=_gen(18)))
    m, cov = gm.mean_cov()
    # mean and covariance by hand: Σ_k π_k μ_k and Σ_k π_k (Σ_k + μ_k μ_kᵀ) − m mᵀ
    m_hand = (gm.weights[:, None] * gm.means).sum(0)
    second = sum(gm.weights[k] * (gm.covs[k] + torch.outer(gm.means[k], gm.means[k])) for k in range(3))
    torch.testing.assert_close(m, m_hand)
    torch.testing.assert_close(cov, second - torch.outer(m_hand, m_hand))
    se = (torch.diagonal(cov) / len(x)).sqrt()
    assert bool(((x.double().mean(0) - m).abs() < 4 * se).all())
    comps = [MultivariateNormal(gm.means[k], gm.covs[k]) for k in range(3)]
    y = x[:7].double()
    lp = torch.logsumexp(torch.stack([c.log_prob(y) + gm.weights[k].log() for k, c in enumerate(comps)]), 0)
    torch.testing.assert_close(gm.log_prob(y), lp)


def test_oracle_bad_arguments():
    with pytest.raises(ValueError, match="must share K"):
        GaussianMixture(torch.ones(2), torch.zeros(3, 2), torch.eye(2).expand(2, 2, 2))
    with pytest.raises(ValueError, match=r"covs must have shape \(K, d, d\) = \(1, 2, 2\)"):
        GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.eye(3)[None])
    with pytest.raises(ValueError, match="non-negative"):
        GaussianMixture(torch.tensor([1.0, -0.5]), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2))
    with pytest.raises(ValueError, match="symmetric positive definite"):
        GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.tensor([[[1.0, 2.0], [2.0, 1.0]]]))
    basis = Pixel((3,))
    with pytest.raises(ValueError, match="must have the basis' event shape"):
        DiagonalGaussian(basis, torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError, match="var must be positive"):
        DiagonalGaussian(basis, torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]))


def test_diagonal_gaussian_in_a_path_with_another_basis_is_right_or_refused():
    basis = Orthogonal.random(3, generator=_gen(21))
    U = basis.matrix()
    mean, var = torch.tensor([0.5, -1.0, 2.0], dtype=F64), torch.tensor([2.0, 0.3, 0.05], dtype=F64)
    dg = DiagonalGaussian(basis, mean, var)
    gm = GaussianMixture(torch.ones(1), (U @ mean)[None], (U @ torch.diag(var) @ U.T)[None])
    path = P.DiagonalPath(Pixel((3,)).double(), S.LinearGamma(torch.zeros(3), torch.zeros(3), a=1.0).double())
    chi_t = torch.randn(2, 3, generator=_gen(22), dtype=F64)
    t = torch.full((2,), 0.4, dtype=F64)
    try:
        got = dg.denoiser(path)(chi_t, t).x_hat
    except ValueError:
        return
    torch.testing.assert_close(got, gm.denoiser(path)(chi_t, t).x_hat)


def test_oracle_predictions_are_built_by_from_x0():
    """Every oracle's Prediction is paths.from_x0(χ_t, χ̂, marginal): every field of Prediction (whatever
    fields paths adds) agrees, so oracles and networks give the samplers the same thing."""
    basis = Orthogonal.random(3, generator=_gen(30))
    var = torch.tensor([2.0, 0.3, 0.05], dtype=F64)
    U = basis.matrix()
    grf = GaussianRandomField((2, 3), 1, power=1.0)
    flat = torch.zeros(1, 2, 3)
    grf_path = P.DiagonalPath(Fourier((1, 2, 3)).double(), S.LinearGamma(flat, flat, a=1.0).double())
    path = P.DiagonalPath(basis, S.LinearGamma(var.log(), -var.log(), a=0.9).double())
    cases = [(DiagonalGaussian(basis, torch.zeros(3, dtype=F64), var), path),
             (GaussianMixture(torch.ones(1), torch.zeros(1, 3), (U @ torch.diag(var) @ U.T)[None]), path),
             (grf, grf_path)]
    for oracle, pth in cases:
        chi_t = torch.randn(4, *pth.event_shape, generator=_gen(31), dtype=F64)
        t = torch.tensor([0.1, 0.4, 0.7, 1.0], dtype=F64)
        pred = oracle.denoiser(pth)(chi_t, t)
        ref = P.from_x0(chi_t, pred.x_hat, pth.schedule.marginal(t))
        assert type(pred) is P.Prediction
        for name in P.Prediction._fields:
            assert getattr(pred, name) is not None, f"the oracle left Prediction.{name} empty"
            torch.testing.assert_close(getattr(pred, name), getattr(ref, name), msg=name)


# ----------------------------------------------------------------------------- Gaussian random fields
def _circulant_cov(S2: torch.Tensor) -> torch.Tensor:
    """C_ij = (1/HW) Σ_k S_k cos(2π(k_y Δy/H + k_x Δx/W)): the circulant covariance Fᴴ diag(S) F, by hand."""
    H, W = S2.shape
    ky, kx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    ry, rx = ky.reshape(-1).double(), kx.reshape(-1).double()
    dy, dx = ry[:, None] - ry[None], rx[:, None] - rx[None]
    phase = 2 * math.pi * (ry[:, None, None] * dy / H + rx[:, None, None] * dx / W)
    return (S2.reshape(-1)[:, None, None] * torch.cos(phase)).sum(0) / (H * W)


def test_grf_spectrum_properties():
    S2 = grf_spectrum((6, 8), power=2.0, k0=1.0, sigma=0.5)
    assert S2.shape == (6, 8) and torch.isclose(S2.mean(), torch.tensor(0.25, dtype=S2.dtype))
    flip = torch.roll(torch.flip(S2, (0, 1)), shifts=(1, 1), dims=(0, 1))  # S[-k]
    assert torch.allclose(S2, flip)
    assert S2[0, 0] > S2[0, 1] > S2[0, 2] > S2[0, 3]
    with pytest.raises(ValueError, match="k0"):
        grf_spectrum(4, k0=0.0)
    with pytest.raises(ValueError, match="power"):
        grf_spectrum(4, power=float("inf"))


def test_grf_is_a_diagonal_gaussian_in_the_fourier_basis():
    """U diag(S) Uᵀ with U the dense Fourier (Hartley) matrix is the hand-built circulant covariance,
    and log_prob is the dense Gaussian log-density with it (C = 2 independent channels)."""
    H, W, C = 4, 6, 2
    grf = GaussianRandomField((H, W), C, power=1.5, k0=0.5)
    assert isinstance(grf, DiagonalGaussian) and isinstance(grf.basis, Fourier)
    assert grf.basis.event_shape == (C, H, W) and torch.equal(grf.mean, torch.zeros(C, H, W, dtype=F64))
    cov = _circulant_cov(grf.spectrum)
    U1 = Fourier((1, H, W)).matrix()
    torch.testing.assert_close(U1 @ torch.diag(grf.var[0].reshape(-1)) @ U1.T, cov)
    x = grf.sample(5, _gen(6))
    mvn = MultivariateNormal(torch.zeros(H * W, dtype=F64), cov)
    ref = mvn.log_prob(x.double().reshape(5, C, H * W)).sum(1)
    torch.testing.assert_close(grf.log_prob(x), ref, atol=1e-9, rtol=1e-9)
    # white noise limit: power 0 -> iid N(0, sigma^2)
    w = GaussianRandomField(5, power=0.0, sigma=0.3).sample(3, _gen(7))
    iid = torch.distributions.Normal(torch.tensor(0.0, dtype=F64), 0.3).log_prob(w.double()).sum((1, 2, 3))
    torch.testing.assert_close(GaussianRandomField(5, power=0.0, sigma=0.3).log_prob(w), iid)


def test_grf_samples_have_the_spectrum():
    n, size = 3000, 8
    grf = GaussianRandomField(size, power=3.0)
    x = grf.sample(n, _gen(5))
    assert x.shape == (n, 1, size, size) and x.dtype == torch.float32
    assert torch.equal(x[:3], grf.sample(3, _gen(5)))
    emp = (torch.fft.fft2(x.double(), norm="ortho").abs() ** 2).mean((0, 1))    # E|X_k|² = S_k
    se = (2 / n) ** 0.5                                                          # |X_k|²/S_k ~ Exp(1) or χ²_1
    assert ((emp / grf.spectrum - 1).abs() < 5 * se).all()
    hartley = (grf.basis.to_coeffs(x.double()) ** 2).mean(0)                     # Var c_k = S_k
    assert ((hartley / grf.var - 1).abs() < 5 * se).all()
    assert abs(x.double().var().item() - 1 / 9) < 0.01                            # pixel variance σ²


def test_grf_sample_is_the_diagonal_gaussian_law():
    """The FFT sampler x = F⁻¹(√S ⊙ F w) equals U(√v ⊙ Uᵀw) in the Hartley basis for the same white w."""
    grf = GaussianRandomField((5, 6), 2, power=2.5, k0=0.7)
    w = torch.randn(4, 2, 5, 6, generator=_gen(8), dtype=F64)
    hart = grf.basis.from_coeffs(grf.var.sqrt() * grf.basis.to_coeffs(w))
    torch.testing.assert_close(grf.sample(4, _gen(8)), hart.float(), atol=1e-6, rtol=0)


def test_grf_denoiser_equals_the_dense_gaussian_oracle():
    """DiagonalGaussian's per-component denoiser for the field = the full-covariance mixture oracle."""
    H, W = 3, 4
    grf = GaussianRandomField((H, W), 1, power=2.0, k0=1.0, sigma=0.5)
    gm = GaussianMixture(torch.ones(1), torch.zeros(1, 1, H, W), _circulant_cov(grf.spectrum)[None])
    basis = Fourier((1, H, W)).double()
    log_var = grf.var.log()
    scale = grf.var.sqrt()
    for path in (P.DiagonalPath(basis, S.LinearGamma(log_var, -log_var, a=0.8).double(), scale=scale),
                 P.DiagonalPath(basis, S.GroupwiseSchedule(G.single((1, H, W))).double())):
        chi_t = torch.randn(3, 1, H, W, generator=_gen(9), dtype=F64)
        _assert_same_predictions(grf, gm, path, chi_t, [0.2, 0.5, 0.9], tol=1e-8)


def test_grf_and_sampling_bad_arguments():
    for size in (0, (3,), (3, 0), (2, 2, 2), 2.0, "4"):
        with pytest.raises(ValueError, match="size"):
            GaussianRandomField(size)
    for channels in (0, 1.5, True):
        with pytest.raises(ValueError, match="channels"):
            GaussianRandomField(4, channels)
    with pytest.raises(ValueError, match="sigma"):
        GaussianRandomField(4, sigma=0.0)
    grf = GaussianRandomField(4)
    gm = _mixture(2)
    dg = DiagonalGaussian(Pixel((2,)), torch.zeros(2), torch.ones(2))
    for n in (0, -1, 2.0):
        for oracle in (grf, gm, dg):
            with pytest.raises(ValueError, match="number of samples"):
                oracle.sample(n)
    with pytest.raises(ValueError, match="expects"):
        grf.log_prob(torch.zeros(2, 1, 4, 5))


def test_fit_is_the_sample_mean_and_covariance_plus_the_ridge():
    x = torch.randn(50, 2, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 0.3 + 1.0
    gm = GaussianMixture.fit(x, ridge=0.01)
    xf = x.flatten(1)
    dev = xf - xf.sum(0) / 50
    assert torch.allclose(gm.means[0].flatten(), xf.sum(0) / 50, atol=1e-12)
    assert torch.allclose(gm.covs[0], dev.T @ dev / 49 + 0.01 * torch.eye(6, dtype=torch.float64), atol=1e-12)
    assert gm.event_shape == (2, 3)
    with pytest.raises(ValueError, match="two examples"):
        GaussianMixture.fit(x[:1])
    with pytest.raises(ValueError, match="ridge"):
        GaussianMixture.fit(x, ridge=-1.0)


def test_group_variances_are_the_schur_complements():
    """Conditional covariance of a group given the groups generated before it, re-derived from the precision
    matrix of the joint law of those groups: Cov(x_j | x_<j) = ((Σ_{≤j})⁻¹)_jj⁻¹."""
    from gdmkit import groupings as G

    shape = (1, 2, 3)
    grp = G.Grouping(torch.tensor([[[2, 0, 1], [1, 0, 2]]]))  # 3 groups of 2, interleaved
    A = torch.randn(6, 6, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    cov = A @ A.T + 0.1 * torch.eye(6, dtype=torch.float64)
    gm = GaussianMixture(torch.ones(1), torch.zeros(1, *shape), cov[None])
    rows = gm.group_variances(grp)
    assert [r["group"] for r in rows] == [0, 1, 2] and [r["size"] for r in rows] == [2, 2, 2]
    upto = torch.zeros(6, dtype=torch.bool)
    for j, r in enumerate(rows):
        m = grp.mask(j).flatten()
        upto |= m
        prec = torch.linalg.inv(cov[upto][:, upto])
        inner = m[upto]  # group j's positions inside the groups generated so far
        cond = torch.linalg.inv(prec[inner][:, inner])
        assert r["marginal"] == pytest.approx(float(cov[m][:, m].diagonal().mean()), rel=1e-12)
        assert r["conditional"] == pytest.approx(float(cond.diagonal().mean()), rel=1e-9)
        assert r["min_eig"] == pytest.approx(float(torch.linalg.eigvalsh(cond)[0]), rel=1e-9)
    assert rows[0]["conditional"] == rows[0]["marginal"]  # nothing generated before the first group
    assert all(r["conditional"] < r["marginal"] for r in rows[1:])  # correlated groups: conditioning shrinks
    with pytest.raises(ValueError, match="one-component"):
        GaussianMixture(torch.ones(2), torch.zeros(2, *shape), cov[None].expand(2, 6, 6)).group_variances(grp)
