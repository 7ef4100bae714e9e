"""Stationarity of generated strips measured against the truth (beyond GUD §5.2 / App. C).

Ground truth: a stationary periodic Gaussian random field on an (H, W) grid with spectrum S (the
variance of each orthonormal 2-D DFT coefficient), whose covariance is circulant,

    C[(y, x), (y', x')] = c((y − y') mod H, (x − x') mod W),   c = ifft2(S)   (c(0) = mean S = σ²).

Any h × w crop is Gaussian with the principal sub-matrix of C (:func:`crop_covariance`): that is
the exact oracle for a window (:func:`window_oracle`, a one-component GaussianMixture in the pixel basis,
where the column schedule lives) and the exact law of every strip. Statistics of strips (B, C, h, W):

- block periodograms of consecutive h × w blocks against the exact expected periodogram of a crop,
  diag(F C_crop Fᴴ) (:func:`expected_periodogram`), radially binned: spectral log-error per position;
- lag covariances c(Δy, Δx), |Δ| ≤ m, per block against c: covariance error per position (drift);
- the mean squared horizontal increment at the joins of emitted chunks against 2(c(0,0) − c(0,1))
  and against the other column boundaries (:func:`seam_statistic`);
- for real textures (no known law), the same statistics against crops of the source image
  (:func:`patch_statistics`), with a floor from a second independent set of source crops.
"""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor

from .bases import Fourier
from .oracles import DiagonalGaussian, GaussianMixture, x0_divergence
from .paths import from_x0
from .tensors import times_like

__all__ = ["periodic_spectrum", "periodic_field", "covariance_function", "crop_covariance", "window_oracle",
           "expected_periodogram", "radial_bins", "block_periodograms", "spectrum_log_error",
           "lag_covariance",
           "lag_covariance_truth", "GaussianWindow", "drift_profile", "summarize_strips", "seam_statistic",
           "patch_statistics", "source_strips"]


def _size(size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if not (isinstance(h, int) and isinstance(w, int) and h >= 1 and w >= 1):
        raise ValueError(f"size must be a positive int or a pair of them, got {size!r}")
    return h, w


def periodic_spectrum(size, power: float = 4.0, corr_length: float = 2.0, sigma: float = 1 / 3) -> Tensor:
    """S on the (H, W) FFT grid, S(f) ∝ (|2πf|² + ℓ⁻²)^(−power/2), f in cycles per pixel (isotropic in
    pixels for any H, W), normalised to pixel variance mean(S) = σ². float64, shape (H, W).

    power = 4 is a Matérn-like field (c(r) ∝ (r/ℓ) K₁(r/ℓ) on the plane) with correlation length ℓ px.
    """
    H, W = _size(size)
    if not (power > 0 and corr_length > 0 and sigma > 0):
        raise ValueError(f"power, corr_length and sigma must be positive, got {power}, {corr_length}, "
                         f"{sigma}")
    fy = torch.fft.fftfreq(H, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(W, dtype=torch.float64)[None, :]
    S = ((2 * math.pi) ** 2 * (fy**2 + fx**2) + corr_length**-2) ** (-power / 2)
    return S * (sigma**2 / S.mean())


def periodic_field(size, **spectrum) -> DiagonalGaussian:
    """The zero-mean periodic field with :func:`periodic_spectrum` (``spectrum`` its keyword arguments):
    a DiagonalGaussian in the real Fourier basis (1, H, W) with Var = S (exact samples and density)."""
    H, W = _size(size)
    S = periodic_spectrum((H, W), **spectrum)
    return DiagonalGaussian(Fourier((1, H, W)), torch.zeros(1, H, W, dtype=torch.float64), S[None].clone())


def covariance_function(S: Tensor) -> Tensor:
    """c(Δy, Δx) = ifft2(S) (real since S(k) = S(−k)), shape (H, W), for the spectrum S (H, W)."""
    c = torch.fft.ifft2(S.to(torch.complex128))
    if float(c.imag.abs().max()) > 1e-10 * float(S.abs().max()):
        raise ValueError("the spectrum is not symmetric, S(k) != S(-k): it is not a real field's")
    return c.real


def crop_covariance(c: Tensor, size) -> Tensor:
    """Covariance (h·w, h·w) of an h × w crop (row-major pixels) of the field with covariance c (H, W)."""
    h, w = _size(size)
    H, W = c.shape
    if h > H or w > W:
        raise ValueError(f"a {h}×{w} crop does not fit the {H}×{W} period of the field")
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    y, x = y.reshape(-1), x.reshape(-1)
    return c[(y[:, None] - y[None]) % H, (x[:, None] - x[None]) % W]


class GaussianWindow:
    """A zero-mean Gaussian with full covariance over (1, h, w): the exact law of a crop.

    ``mixture`` is the one-component :class:`~gdmkit.oracles.GaussianMixture` (sampling, ``log_prob``,
    reference denoiser). :meth:`denoiser` computes the same E[χ | χ_t] = Σ̄ D_α (D_α Σ̄ D_α + D_σ²)⁻¹ χ_t
    with one Cholesky factorisation of K = D_α Σ̄ D_α + D_σ² per time (shared by the batch, cached), not one
    per example: a call costs two triangular solves per batch, d²·B, after the d³/3 of a new time; when a
    gradient is requested (divergences: d rows at once) the explicit gain Σ̄ D_α K⁻¹ is formed once per time.
    The denoiser's ``divergence(chi_t, t, side)`` is tr ∂v/∂χ_t in closed form from diag(Σ̄ D_α K⁻¹)
    (one ``cholesky_inverse`` per time, shared by the batch), the ODE likelihood's
    ``divergence="closed_form"``: d³ per time instead of the B·d³ of d batched backward rows.
    """

    def __init__(self, cov: Tensor, size):
        h, w = _size(size)
        cov = 0.5 * (cov + cov.T).double()
        self.mixture = GaussianMixture(torch.ones(1), torch.zeros(1, 1, h, w), cov[None])
        self.event_shape, self.cov = (1, h, w), cov

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.mixture.sample(n, generator)

    def log_prob(self, x: Tensor) -> Tensor:
        return self.mixture.log_prob(x)

    def denoiser(self, path, cache: int = 256):
        """Exact ``model(chi_t, t, side) -> Prediction`` under ``path`` (any basis and prior scale)."""
        cov = self.mixture.in_coords(path).covs[0]                               # Σ̄ = M Σ Mᵀ, (d, d)
        covs: dict = {}                                                          # Σ̄ per device
        factors: dict = {}

        def factor(alpha: Tensor, sigma: Tensor) -> dict:                      # of K = D_α Σ̄ D_α + D_σ²
            key = (str(alpha.device), *(v.detach().cpu().numpy().tobytes() for v in (alpha, sigma)))
            if key not in factors:
                if len(factors) >= cache:
                    factors.clear()
                K = alpha[:, None] * covs[alpha.device] * alpha[None] + torch.diag(sigma.square())
                L, info = torch.linalg.cholesky_ex(K)
                if int(info) != 0:  # Σ̄ is positive definite (GaussianMixture checks), so only by round-off
                    raise ValueError("the window's noised covariance D_α Σ̄ D_α + D_σ² lost positive "
                                     f"definiteness to round-off at this time (min σ = {float(sigma.min()):.3g}); "
                                     "add a small multiple of the identity to the covariance")
                factors[key] = {"L": L}
            return factors[key]

        def apply(y: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:            # rows y_b -> Σ̄ D_α K⁻¹ y_b
            f, S = factor(alpha, sigma), covs[alpha.device]
            if not y.requires_grad:                                              # two triangular solves
                return (S @ (alpha[:, None] * torch.cholesky_solve(y.T, f["L"]))).T
            if "gain" not in f:  # a backward pass follows (divergences: many rows at once): the explicit
                f["gain"] = torch.cholesky_solve(alpha[:, None] * S, f["L"]).T  # gain G = Σ̄ D_α K⁻¹
            return y @ f["gain"].T

        def gain_diag(alpha: Tensor, sigma: Tensor) -> Tensor:                # diag G = rowsum(Σ̄ D_α ⊙ K⁻¹)
            f = factor(alpha, sigma)
            if "diag" not in f:
                f["diag"] = (covs[alpha.device] * alpha[None] * torch.cholesky_inverse(f["L"])).sum(1)
            return f["diag"]

        def coefficients(chi_t: Tensor, t, side: str):
            c = path.schedule.marginal(times_like(t, chi_t), side)
            B = chi_t.shape[0]
            a = c.alpha.expand_as(chi_t).reshape(B, -1).double()
            s = c.sigma.expand_as(chi_t).reshape(B, -1).double()
            if chi_t.device not in covs:
                covs[chi_t.device] = cov.to(chi_t.device)
            return c, a, s, bool((a == a[:1]).all() and (s == s[:1]).all())  # one factorisation for the batch?

        def model(chi_t: Tensor, t, side: str = "left"):
            c, a, s, shared = coefficients(chi_t, t, side)
            y = chi_t.reshape(chi_t.shape[0], -1).double()
            if shared:
                x_hat = apply(y, a[0], s[0])
            else:
                x_hat = torch.cat([apply(y[i:i + 1], a[i], s[i]) for i in range(len(y))])
            return from_x0(chi_t, x_hat.reshape(chi_t.shape).to(chi_t.dtype), c)

        def divergence(chi_t: Tensor, t, side: str = "left") -> Tensor:
            """tr ∂v/∂χ_t (B,) in closed form (oracles.x0_divergence with diag G); G does not depend on χ_t."""
            c, a, s, shared = coefficients(chi_t, t, side)
            g = (gain_diag(a[0], s[0]).expand_as(a) if shared
                 else torch.stack([gain_diag(a[i], s[i]) for i in range(len(a))]))
            return x0_divergence(chi_t, g.reshape(chi_t.shape).to(chi_t.dtype), c)
        model.divergence = divergence
        return model


def window_oracle(c: Tensor, size) -> GaussianWindow:
    """Exact law of an h × w crop of the field with covariance function c, event shape (1, h, w): its
    ``denoiser(path)`` is the exact E[χ | χ_t] under any diagonal path (pixel basis included)."""
    return GaussianWindow(crop_covariance(c, size), size)


def _dft_matrix(n: int) -> Tensor:
    k = torch.arange(n, dtype=torch.float64)
    return torch.exp(-2j * math.pi * k[:, None] * k[None] / n) / math.sqrt(n)


def expected_periodogram(cov: Tensor, size) -> Tensor:
    """E|X_k|² for X = fft2(crop, norm="ortho") of a zero-mean crop with covariance ``cov`` (h·w, h·w):
    diag(F C Fᴴ) with F = F_h ⊗ F_w. float64, shape (h, w)."""
    h, w = _size(size)
    F = torch.kron(_dft_matrix(h), _dft_matrix(w))
    return torch.einsum("ki,ij,kj->k", F, cov.to(torch.complex128), F.conj()).real.reshape(h, w)


def radial_bins(size, n_bins: int | None = None) -> Tensor:
    """Bin index (h, w) of each FFT frequency by |f| (cycles/px), n_bins equal-width bins on [0, |f|max].

    In integers: |f|² = N / (h² w²) with N = k_y² w² + k_x² h², so the bin ⌊n_bins |f| / |f|max⌋ is
    ⌊√⌊n_bins² N / N_max⌋⌋. Many frequencies lie exactly on a bin edge (at 16×16, 38 of 256). A floating-
    point floor put them by the last bit of |f| / |f|max, which differs between CPUs: notebook 06's
    spectral-error floors, computed from exact samples, differed by 2 % and 14 % between two machines.
    """
    h, w = _size(size)
    n_bins = n_bins or max(h, w) // 2
    ky, kx = (torch.fft.fftfreq(n, d=1.0 / n).round().long() for n in (h, w))  # integer frequency indices
    N = ky[:, None] ** 2 * w ** 2 + kx[None, :] ** 2 * h ** 2  # (h, w), int64
    q = n_bins ** 2 * N // N.max()
    b = q.double().sqrt().floor().long()  # isqrt(q): the float root corrected by at most one either way
    b = b - (b * b > q).long()
    b = b + ((b + 1) * (b + 1) <= q).long()
    return b.clamp_max(n_bins - 1)


def block_periodograms(strips: Tensor, width: int) -> Tensor:
    """Mean over strips and channels of |fft2(block, ortho)|² for consecutive blocks of ``width`` columns;
    strips (B, C, h, W_total) -> (n_blocks, h, width), n_blocks = W_total // width."""
    if strips.ndim != 4 or strips.shape[-1] < width:
        raise ValueError(f"strips must be (B, C, h, W) with W >= width = {width}, got {tuple(strips.shape)}")
    n = strips.shape[-1] // width
    blocks = strips[..., : n * width].double().unflatten(-1, (n, width)).movedim(-2, 0)  # (n, B, C, h, w)
    return torch.fft.fft2(blocks, norm="ortho").abs().square().mean((1, 2))


def spectrum_log_error(P: Tensor, P_ref: Tensor, bins: Tensor) -> Tensor:
    """RMS over radial bins of log(binned P / binned P_ref); P (..., h, w), P_ref (h, w) -> shape (...)."""
    n = int(bins.max()) + 1
    flat = bins.reshape(-1)

    def binned(p):
        p = p.reshape(*p.shape[:-2], -1)
        out = torch.zeros(*p.shape[:-1], n, dtype=torch.float64)
        return out.index_add_(-1, flat, p.double()) / torch.bincount(flat, minlength=n)
    return (binned(P) / binned(P_ref)).log().square().mean(-1).sqrt()


def lag_covariance(x: Tensor, max_lag: int, center: bool = False) -> Tensor:
    """Empirical c(Δy, Δx) for 0 ≤ Δy ≤ m, −m ≤ Δx ≤ m over all pixel pairs inside each image
    (no wrap-around), averaged over (B, C); x (B, C, h, w) -> (m + 1, 2m + 1). ``center`` removes the mean."""
    x = x.double()
    if center:
        x = x - x.mean()
    h, w = x.shape[-2:]
    if max_lag >= min(h, w):
        raise ValueError(f"max_lag {max_lag} must be < the image side {min(h, w)}")
    out = torch.zeros(max_lag + 1, 2 * max_lag + 1, dtype=torch.float64)
    for dy in range(max_lag + 1):
        for j, dx in enumerate(range(-max_lag, max_lag + 1)):
            x0, x1 = max(0, -dx), w - max(0, dx)      # pairs (y, x), (y + dy, x + dx) inside the image
            out[dy, j] = (x[..., : h - dy, x0:x1] * x[..., dy:, x0 + dx: x1 + dx]).mean()
    return out


def lag_covariance_truth(c: Tensor, max_lag: int) -> Tensor:
    """The true c(Δy, Δx) on the lags of :func:`lag_covariance`, from the covariance function c (H, W)."""
    dy = torch.arange(max_lag + 1)[:, None] % c.shape[0]
    dx = torch.arange(-max_lag, max_lag + 1)[None, :] % c.shape[1]
    return c[dy, dx]


def drift_profile(strips: Tensor, width: int, P_ref: Tensor, c_ref: Tensor, max_lag: int = 2,
                  center: bool = False) -> pd.DataFrame:
    """Per block of ``width`` columns along the strips (B, C, h, W): position (first column), the pixel
    variance ratio to c_ref[0, 0], the spectral log-error against P_ref (h, width) and the relative
    lag-covariance error ‖ĉ − c_ref‖/‖c_ref‖ (c_ref (m + 1, 2m + 1)). One row per block."""
    bins = radial_bins(P_ref.shape)
    P = block_periodograms(strips, width)
    err = spectrum_log_error(P, P_ref, bins)
    rows = []
    for j in range(P.shape[0]):
        block = strips[..., j * width: (j + 1) * width]
        cj = lag_covariance(block, max_lag, center)
        rows.append({"position": j * width, "var_ratio": float(cj[0, max_lag] / c_ref[0, max_lag]),
                     "spectrum_log_error": float(err[j]),
                     "cov_error": float((cj - c_ref).norm() / c_ref.norm())})
    return pd.DataFrame(rows)


def seam_statistic(strips: Tensor, k: int, n_shifts: int, d_ref: float | None = None) -> dict:
    """Are the joins between emitted chunks detectable? strips (B, C, h, L + n_shifts·k) from extension.

    D_j = mean over (C, h) of (x_{j+1} − x_j)² at the boundary before column j (0-based). Joins: j = m·k,
    m = 1..n_shifts; the other boundaries of the extended part (j < n_shifts·k) are interior. Returns the
    mean D at joins and interior (None if k = 1: no interior), each over ``d_ref`` (the truth
    2(c(0,0) − c(0,1)), or None), and z = (joins − interior)/standard error over strips (paired).
    """
    if n_shifts < 1 or strips.shape[-1] < n_shifts * k + 1:
        raise ValueError(f"need at least one shift and strips wider than n_shifts·k = {n_shifts * k}")
    x = strips.double()
    D = (x[..., 1:] - x[..., :-1]).square().mean((1, 2))          # (B, W−1): boundary before column j+1
    j = torch.arange(1, n_shifts * k + 1)                          # boundaries before columns 1..n·k
    joins = j % k == 0
    per_join = D[:, j[joins] - 1].mean(1)
    out = {"joins": float(per_join.mean()), "interior": None, "z": None, "n_joins": int(joins.sum())}
    if k > 1:
        per_int = D[:, j[~joins] - 1].mean(1)
        diff = per_join - per_int
        out["interior"] = float(per_int.mean())
        se = float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else float("inf")
        out["z"] = float(diff.mean() / se) if se > 0 else 0.0
    if d_ref is not None:
        out["joins_over_truth"] = out["joins"] / d_ref
        out["interior_over_truth"] = None if out["interior"] is None else out["interior"] / d_ref
    return out


def summarize_strips(strips: Tensor, floor_strips: Tensor, window: int, P_ref: Tensor, c_ref: Tensor,
                     k: int, n_shifts: int, max_lag: int = 2) -> dict:
    """Headline statistics of extended strips against the truth, next to the same statistics of
    ``floor_strips`` (exact or source strips of the same size and number: what a perfect sampler gets).

    Means over blocks of the spectral log-error, the lag-covariance error and the variance ratio; drift
    = mean over the second half of the blocks minus the first half (spectral error and variance ratio);
    the seam statistic (:func:`seam_statistic`, with d_ref = 2(c_ref(0,0) − c_ref(0,1)) from c_ref).
    """
    m = max_lag
    d_ref = float(2 * (c_ref[0, m] - c_ref[0, m + 1]))
    out = {}
    for tag, x in (("", strips), ("floor_", floor_strips)):
        df = drift_profile(x, window, P_ref, c_ref, max_lag)
        half = len(df) // 2
        first, second = df.iloc[:half], df.iloc[half:]
        out.update({f"{tag}spectrum_error": float(df.spectrum_log_error.mean()),
                    f"{tag}cov_error": float(df.cov_error.mean()),
                    f"{tag}var_ratio": float(df.var_ratio.mean()),
                    f"{tag}drift_spectrum": float(second.spectrum_log_error.mean()
                                                  - first.spectrum_log_error.mean()),
                    f"{tag}drift_var": float(second.var_ratio.mean() - first.var_ratio.mean())})
    seam = seam_statistic(strips, k, n_shifts, d_ref) if n_shifts else {}
    out.update({f"seam_{key}": v for key, v in seam.items() if key != "n_joins"})
    return out


def _patch_matrix(x: Tensor, size: int) -> Tensor:
    p = torch.nn.functional.unfold(x.double().flatten(0, 1)[:, None], size)   # (B·C, size², n)
    return p.transpose(1, 2).reshape(-1, size * size)


def patch_statistics(x: Tensor, ref: Tensor, size: int = 3) -> dict:
    """Statistics of images x (B, C, h, w) against reference images ref (same h, w): the Wasserstein-1
    distance of the pixel marginals, the relative error of the size × size patch covariance, and the
    spectral log-error of the mean periodograms."""
    if x.shape[-2:] != ref.shape[-2:]:
        raise ValueError(f"x {tuple(x.shape)} and ref {tuple(ref.shape)} must have the same image size")
    q = torch.linspace(0.005, 0.995, 199, dtype=torch.float64)
    qx, qr = torch.quantile(x.double().flatten(), q), torch.quantile(ref.double().flatten(), q)
    w1 = float((qx - qr).abs().mean())
    px, pr = _patch_matrix(x, size), _patch_matrix(ref, size)
    cx, cr = torch.cov(px.T), torch.cov(pr.T)
    P, Pr = (torch.fft.fft2(v.double(), norm="ortho").abs().square().mean((0, 1)) for v in (x, ref))
    return {"w1": w1, "patch_cov_error": float((cx - cr).norm() / cr.norm()),
            "spectrum_log_error": float(spectrum_log_error(P, Pr, radial_bins(P.shape)))}


def source_strips(image: Tensor, n: int, size, generator: torch.Generator | None = None) -> Tensor:
    """n random crops (n, C, h, w) of a (C, H, W) image (with replacement), positions from ``generator``."""
    h, w = _size(size)
    C, H, W = image.shape
    if h > H or w > W:
        raise ValueError(f"a {h}×{w} crop does not fit the {H}×{W} image")
    ys = torch.randint(0, H - h + 1, (n,), generator=generator)
    xs = torch.randint(0, W - w + 1, (n,), generator=generator)
    return torch.stack([image[:, y: y + h, x: x + w] for y, x in zip(ys.tolist(), xs.tolist())])
