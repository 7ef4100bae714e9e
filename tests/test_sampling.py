"""Tests for gdmkit.sampling, driven by the exact oracles.

Moments of generated samples are compared with the mixture's exact mean and covariance within a few
standard errors estimated from the samples themselves; solver accuracy is measured against the exact
flow map of Gaussian data, χ_t = α_t m + √(α_t² v + σ_t²) ξ (the probability-flow ODE keeps the
standardised coordinate ξ fixed), so no golden numbers are involved.
"""
from __future__ import annotations


import pytest
import torch

from gdmkit import groupings as G
from gdmkit import paths as P
from gdmkit import sampling as SM
from gdmkit import schedules as S
from gdmkit.bases import Orthogonal, Pixel
from gdmkit.oracles import DiagonalGaussian, GaussianMixture

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mixture() -> GaussianMixture:
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    means = torch.tensor([[-1.5, 0.5], [1.0, 1.5], [1.0, -1.5]], dtype=F64)
    covs = torch.tensor([[[0.30, 0.10], [0.10, 0.20]],
                         [[0.20, -0.05], [-0.05, 0.30]],
                         [[0.25, 0.00], [0.00, 0.15]]], dtype=F64)
    return GaussianMixture(weights, means, covs)


def _gdm_path() -> P.DiagonalPath:
    """GDM with k = d = 2 in a rotated basis: one coefficient after the other (Fig. 1a)."""
    return P.DiagonalPath(Orthogonal.random(2, generator=_gen(1)), S.GroupwiseSchedule(G.per_element((2,))))


def _vp_path(gm: GaussianMixture) -> P.DiagonalPath:
    """GUD linear schedule at a = 1 (standard diffusion), noised enough that χ_1 ≈ N(0, I)."""
    log_var = torch.diagonal(gm.mean_cov()[1]).log()
    return P.DiagonalPath(Pixel((2,)).double(), S.LinearGamma(log_var, -log_var, a=1.0, gamma_noise=12.0))


def _assert_moments(x: torch.Tensor, gm: GaussianMixture, extra: float = 0.0) -> None:
    """Sample mean and covariance within 4 standard errors (+ ``extra`` for the discretisation)."""
    x = x.double()
    n = len(x)
    m, cov = gm.mean_cov()
    dev = x - x.mean(0)
    se_mean = (dev.var(0) / n).sqrt()
    prods = dev[:, :, None] * dev[:, None, :]                       # (n, d, d)
    se_cov = (prods.var(0) / n).sqrt()                              # SE of each covariance entry
    err_mean = (x.mean(0) - m).abs()
    err_cov = (prods.mean(0) - cov).abs()
    assert bool((err_mean < 4 * se_mean + extra).all()), (err_mean, se_mean)
    assert bool((err_cov < 4 * se_cov + extra).all()), (err_cov, se_cov)


# Each call of the mixture oracle costs milliseconds on a busy CPU, so the moment tests use few steps:
# Heun's bias at these step counts, and Euler's on the VP path, are well below the 4-SE band
# (checked against 400-step Heun references when the tests were written); Euler on the GDM path's
# piecewise-linear A(t) needs ~10× more steps for the same bias (first order, stiff near σ → 0).
@pytest.mark.parametrize("which,solver,steps", [("gdm", SM.heun, [8, 8]), ("vp", SM.euler, 40),
                                                ("vp", SM.heun, 10)])
def test_oracle_ode_reproduces_mixture_moments(which, solver, steps):
    gm = _mixture()
    path = _gdm_path() if which == "gdm" else _vp_path(gm)
    ts = path.schedule.time_grid(steps)
    x = SM.generate(path, gm.denoiser(path), 1500, ts, solver=solver, generator=_gen(2))
    assert x.shape == (1500, 2)
    _assert_moments(x, gm, extra=0.01)


def test_euler_maruyama_reproduces_mixture_moments():
    """EM's weak error is O(Δt): at 40 steps its bias was ≤ 0.034 on the covariance (20 000 samples,
    3 seeds), hence an allowance of 0.04 on top of 4 standard errors."""
    gm = _mixture()
    path = _vp_path(gm)
    x = SM.generate(path, gm.denoiser(path), 1000, S.uniform_grid(40), solver=SM.euler_maruyama,
                    generator=_gen(4))
    _assert_moments(x, gm, extra=0.04)


def _gaussian_case():
    """Gaussian data diagonal in a rotated basis, on a float64 VP path; the exact flow map."""
    basis = Orthogonal.random(3, generator=_gen(5))
    m = torch.tensor([0.5, -1.0, 0.2], dtype=F64)
    v = torch.tensor([2.0, 0.3, 0.05], dtype=F64)
    sched = S.LinearGamma(v.log(), -v.log(), a=0.7, gamma_noise=6.0).double()
    path = P.DiagonalPath(basis, sched)
    model = DiagonalGaussian(basis, m, v).denoiser(path)
    chi1 = torch.randn(8, 3, generator=_gen(6), dtype=F64)

    def flow(t_from: float, t_to: float, chi: torch.Tensor) -> torch.Tensor:
        c0, c1 = (sched.marginal(torch.tensor([t], dtype=F64)) for t in (t_from, t_to))
        xi = (chi - c0.alpha * m) / (c0.alpha ** 2 * v + c0.sigma ** 2).sqrt()
        return c1.alpha * m + (c1.alpha ** 2 * v + c1.sigma ** 2).sqrt() * xi

    return model, chi1, flow


def test_heun_beats_euler_and_both_converge_at_their_order():
    model, chi1, flow = _gaussian_case()
    exact = flow(1.0, 0.0, chi1)
    err = {}
    for name, solver in (("euler", SM.euler), ("heun", SM.heun)):
        for n in (10, 20, 40):
            out = solver(model, chi1, S.uniform_grid(n).double())
            err[name, n] = (out - exact).abs().max().item()
    for n in (10, 20, 40):
        assert err["heun", n] < 0.2 * err["euler", n], err
    # first order: error halves with twice the steps; second order: quarters
    assert 1.6 < err["euler", 20] / err["euler", 40] < 2.5, err
    assert 3.0 < err["heun", 20] / err["heun", 40] < 5.0, err


def test_encode_inverts_generate_on_a_fine_grid():
    """Forward ODE (encoding, GDM §4.5) then backward ODE with the same grid returns the data.

    Heun's round-trip error is O(h²): 7e-3 at 15 steps per group on this mixture, hence 2e-2."""
    gm = _mixture()
    x0 = gm.sample(16, generator=_gen(7)).double()
    path = _gdm_path()                                   # kinks: the one-sided derivatives matter
    model = gm.denoiser(path)
    ts = path.schedule.time_grid([15, 15])
    chi1 = SM.encode(model, path.to_chi(x0), ts, solver=SM.heun)    # given decreasing: reversed
    back = SM.generate(path, model, 16, ts, solver=SM.heun, latents=chi1)
    assert (back - x0).abs().max().item() < 2e-2
    # encode is the forward flow: on Gaussian data it converges (second order) to the exact latent
    gmodel, chi1, flow = _gaussian_case()
    chi0 = flow(1.0, 0.0, chi1)
    err = [(SM.encode(gmodel, chi0, S.uniform_grid(n).double(), solver=SM.heun) - chi1).abs().max().item()
           for n in (40, 80)]
    assert err[0] < 2e-2 and 3.0 < err[0] / err[1] < 5.0, err


def test_exact_flow_round_trip_sanity():
    """The reference flow map itself is invertible and is the identity at equal times."""
    _, chi1, flow = _gaussian_case()
    torch.testing.assert_close(flow(0.0, 1.0, flow(1.0, 0.0, chi1)), chi1)
    torch.testing.assert_close(flow(0.3, 0.3, chi1), chi1)


def _cheap():
    """A Gaussian oracle on a VP path: cheap, for tests about the plumbing rather than accuracy."""
    basis = Orthogonal.random(2, generator=_gen(20))
    var = torch.tensor([1.5, 0.2], dtype=F64)
    path = P.DiagonalPath(basis, S.LinearGamma(var.log(), -var.log(), a=1.0, gamma_noise=12.0))
    return path, DiagonalGaussian(basis, torch.tensor([0.3, -0.2], dtype=F64), var).denoiser(path)


def test_nfe_counting():
    path, model = _cheap()
    chi = path.prior_sample(4, generator=_gen(8)).double()
    ts = S.uniform_grid(7)
    for solver, per_step in ((SM.euler, 1), (SM.heun, 2)):
        counter = SM.CountingModel(model)
        solver(counter, chi, ts)
        assert counter.nfe == per_step * 7
    counter = SM.CountingModel(model)
    SM.euler_maruyama(counter, chi, ts, path.schedule, generator=_gen(9))
    assert counter.nfe == 7
    counter = SM.CountingModel(model)
    SM.generate(path, counter, 4, ts, solver=SM.heun, generator=_gen(9))
    assert counter.nfe == 14


def test_same_seed_same_samples_different_seed_different():
    path, model = _cheap()
    ts = S.uniform_grid(10)
    for solver in (SM.euler, SM.euler_maruyama):
        a = SM.generate(path, model, 16, ts, solver=solver, generator=_gen(10))
        b = SM.generate(path, model, 16, ts, solver=solver, generator=_gen(10))
        c = SM.generate(path, model, 16, ts, solver=solver, generator=_gen(11))
        assert torch.equal(a, b) and not torch.allclose(a, c)
    # the SDE noise comes from the generator as well: same latents, different generators
    latents = path.prior_sample(16, generator=_gen(12))
    a = SM.generate(path, model, 16, ts, solver=SM.euler_maruyama, generator=_gen(1), latents=latents)
    b = SM.generate(path, model, 16, ts, solver=SM.euler_maruyama, generator=_gen(2), latents=latents)
    assert not torch.allclose(a, b)


def test_euler_maruyama_last_step_adds_no_noise_and_needs_decreasing_grid():
    """With one step, EM is deterministic: χ + Δt (v + ½ g² ẑ/σ) (GUD eq. 9, no noise at the end)."""
    gm = _mixture()
    path = _vp_path(gm)
    model = gm.denoiser(path)
    chi = path.prior_sample(5, generator=_gen(13)).double()
    ts = torch.tensor([0.6, 0.4])
    a = SM.euler_maruyama(model, chi, ts, path.schedule, generator=_gen(1))
    b = SM.euler_maruyama(model, chi, ts, path.schedule, generator=_gen(2))
    assert torch.equal(a, b)
    t0, t1 = float(ts[0]), float(ts[1])
    tv = torch.full((5,), t0, dtype=F64)
    p, c = model(chi, tv), path.schedule.marginal(tv)
    # reverse SDE drift f − g² ∇log p with f = (α′/α)χ, ∇log p = −ẑ/σ
    drift = c.d_log_alpha * chi + c.g2 * p.z_hat / c.sigma
    torch.testing.assert_close(a, chi + (t1 - t0) * drift)
    with pytest.raises(ValueError, match="ts must decrease strictly"):
        SM.euler_maruyama(model, chi, torch.tensor([0.2, 0.6]), path.schedule)


def test_euler_maruyama_on_a_gdm_path_is_finite_or_refused():
    basis = Pixel((2,)).double()
    path = P.DiagonalPath(basis, S.GroupwiseSchedule(G.per_element((2,))))
    model = DiagonalGaussian(basis, torch.zeros(2, dtype=F64), torch.full((2,), 0.5, dtype=F64)).denoiser(path)
    try:
        x = SM.generate(path, model, 4, path.schedule.time_grid([10, 10]), solver=SM.euler_maruyama,
                        generator=_gen(16))
    except ValueError:
        return
    assert bool(torch.isfinite(x).all()), x


def test_callback_and_trajectory_recorder():
    gm = _mixture()
    path = _gdm_path()
    ts = path.schedule.time_grid([3, 2])
    cb, frames = SM.trajectory_recorder(path, every=2)
    seen = []
    SM.generate(path, gm.denoiser(path), 4, ts, generator=_gen(14),
                callback=lambda i, t, chi, pred: (seen.append((i, t)), cb(i, t, chi, pred)))
    assert [i for i, _ in seen] == list(range(5))
    assert [t for _, t in seen] == pytest.approx(ts[:-1].tolist())
    assert len(frames) == 3 and frames[0][0] == pytest.approx(1.0)
    assert frames[0][1].shape == (4, 2) and bool(torch.isfinite(frames[0][2]).all())


def test_per_group_steps():
    for k, total in ((3, 10), (4, 4), (5, 17)):
        steps = SM.per_group_steps(k, total)
        assert len(steps) == k and sum(steps) == total and min(steps) >= 1 and max(steps) - min(steps) <= 1
    with pytest.raises(ValueError, match="at least one step per group: total = 2 < k = 3"):
        SM.per_group_steps(3, 2)


def test_generate_wraps_a_network_with_the_path():
    """A torch.nn.Module is wrapped by path.denoiser: same result as passing the model."""
    path = P.DiagonalPath(Pixel((2,)).double(), S.GroupwiseSchedule(G.per_element((2,))), target="x0")

    class Net(torch.nn.Module):
        def forward(self, x_t, state, summary):
            return 0.5 * x_t + state

    net = Net()
    ts = path.schedule.time_grid([2, 2])
    latents = torch.randn(3, 2, generator=_gen(15), dtype=F64)
    a = SM.generate(path, net, 3, ts, latents=latents)
    b = SM.generate(path, path.denoiser(net), 3, ts, latents=latents)
    torch.testing.assert_close(a, b)
