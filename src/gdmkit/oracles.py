"""Exact densities and posterior means E[χ | χ_t]: Gaussian mixtures, Gaussian data diagonal in a basis, and
Gaussian random fields (diagonal in the Fourier basis), under any diagonal path.

For data x ~ Σ_k π_k N(μ_k, Σ_k) and χ = M x with M = S⁻¹Uᵀ (basis U, prior scale S), the coordinates
are a mixture with μ̄_k = M μ_k, Σ̄_k = M Σ_k Mᵀ. Under χ_t = α ⊙ χ + σ ⊙ z̄ (GDM eq. 11, GUD eq. 14):

    χ_t | k ~ N(α ⊙ μ̄_k, C_k),   C_k = D_α Σ̄_k D_α + D_σ²
    E[χ | χ_t, k] = μ̄_k + Σ̄_k D_α C_k⁻¹ (χ_t − α ⊙ μ̄_k)
    E[χ | χ_t] = Σ_k r_k(χ_t) E[χ | χ_t, k],  r_k ∝ π_k N(χ_t; α ⊙ μ̄_k, C_k)

This is the optimal denoiser x_θ* of GDM Prop. 3.3 and the optimal score of GUD eq. 11; its velocity
is exact ground truth for samplers, likelihoods and the papers' claims. Every denoiser here builds its
:class:`~gdmkit.paths.Prediction` through :func:`~gdmkit.paths.from_x0`, so it carries every field a
network's prediction carries.
"""
from __future__ import annotations

import copy
import math
import numbers
from typing import Callable

import torch
from torch import Tensor

from . import tensors
from .bases import Basis, Fourier
from .paths import DiagonalPath, Prediction, from_x0
from .schedules import Marginal

__all__ = ["GaussianMixture", "DiagonalGaussian", "GaussianRandomField", "grf_spectrum", "x0_divergence"]

_LOG2PI = math.log(2 * math.pi)


def _positive_int(v, what: str) -> int:
    """``v`` as a positive int, or ValueError naming ``what``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{what} must be a positive integer, got {v!r}")
    return int(v)


def x0_divergence(chi_t: Tensor, gain_diag: Tensor, c: Marginal) -> Tensor:
    """tr ∂v/∂χ_t per example, shape (B,), of the velocity v = :func:`~gdmkit.paths.from_x0` builds from a
    posterior mean χ̂(χ_t) whose Jacobian has the diagonal ``gain_diag`` = ∂χ̂_i/∂χ_{t,i} (B, *event_shape).

    From v_i = α′_i χ̂_i + σ′_i (χ_{t,i} − α_i χ̂_i)/σ_i (ẑ_i = 0 where σ_i = 0) only the diagonal enters:

        ∂v_i/∂χ_{t,i} = α′_i G_ii + σ′_i (1 − α_i G_ii)/σ_i     (α′_i G_ii where σ_i = 0),

    the divergence of GUD eq. 25 in closed form for the exact Gaussian oracles (their G = Σ̄ D_α K⁻¹ does not
    depend on χ_t), instead of d backward passes.
    """
    g = gain_diag.expand_as(chi_t)
    a, s, da, ds = (z.to(chi_t).expand_as(chi_t) for z in (c.alpha, c.sigma, c.d_alpha, c.d_sigma))
    noise = torch.where(s > 0, ds * (1 - a * g) / s.clamp_min(1e-30), torch.zeros_like(g))
    return (da * g + noise).flatten(1).sum(1)


def _denoiser(path: DiagonalPath, posterior_mean: Callable[[Tensor, Marginal], Tensor],
              gain_diag: Callable[[Tensor, Marginal], Tensor] | None = None):
    """``model(chi_t, t, side="left") -> Prediction`` from an exact ``posterior_mean(chi_t, marginal)``;
    with ``gain_diag(chi_t, marginal)`` (the diagonal of ∂χ̂/∂χ_t) the model also carries
    ``model.divergence(chi_t, t, side) -> (B,)``, the closed-form tr ∂v/∂χ_t (:func:`x0_divergence`) that
    ``likelihood.log_likelihood(..., divergence="closed_form")`` uses."""
    def model(chi_t: Tensor, t: Tensor, side: str = "left") -> Prediction:
        c = path.schedule.marginal(tensors.times_like(t, chi_t), side)
        return from_x0(chi_t, posterior_mean(chi_t, c), c)
    if gain_diag is not None:
        def divergence(chi_t: Tensor, t: Tensor, side: str = "left") -> Tensor:
            c = path.schedule.marginal(tensors.times_like(t, chi_t), side)
            return x0_divergence(chi_t, gain_diag(chi_t, c), c)
        model.divergence = divergence
    return model


class GaussianMixture:
    """A Gaussian mixture in data space, with exact sampling, density and posterior mean.

    Parameters
    ----------
    weights : Tensor, shape (K,)
        Mixture weights (normalised here).
    means : Tensor, shape (K, *event_shape)
    covs : Tensor, shape (K, d, d)
        Full covariances over the flattened event, d = prod(event_shape); must be positive definite.
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor):
        weights, means, covs = (torch.as_tensor(v, dtype=torch.float64) for v in (weights, means, covs))
        K = weights.shape[0]
        if means.shape[0] != K or covs.shape[0] != K:
            raise ValueError(f"weights, means and covs must share K; got {K}, {means.shape[0]}, "
                             f"{covs.shape[0]}")
        self.event_shape = tuple(means.shape[1:])
        d = math.prod(self.event_shape)
        if covs.shape[1:] != (d, d):
            raise ValueError(f"covs must have shape (K, d, d) = ({K}, {d}, {d}) for events of shape "
                             f"{self.event_shape}, got {tuple(covs.shape)}")
        if bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError("mixture weights must be non-negative with a positive sum")
        try:
            torch.linalg.cholesky(covs)
        except RuntimeError as e:
            raise ValueError("every covariance must be symmetric positive definite; add a small "
                             "multiple of the identity") from e
        self.weights, self.means, self.covs, self.d = weights / weights.sum(), means, covs, d

    # ---------------------------------------------------------------- data space
    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        """n exact samples, shape (n, *event_shape), float32 (and the component labels (n,) if asked)."""
        n = _positive_int(n, "the number of samples n")
        w = self.weights if generator is None else self.weights.to(generator.device)
        k = torch.multinomial(w, n, replacement=True, generator=generator).cpu()
        eps = tensors.randn((n, self.d), generator, device="cpu", dtype=torch.float64)
        L = torch.linalg.cholesky(self.covs)[k]
        x = (self.means.flatten(1)[k] + (L @ eps[..., None])[..., 0]).reshape(n, *self.event_shape).float()
        return (x, k) if return_labels else x

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) per example, shape (B,), x (B, *event_shape)."""
        return _mixture_log_prob(x.double().flatten(1), self.weights, self.means.flatten(1), self.covs)

    # ---------------------------------------------------------------- χ coordinates
    def in_coords(self, path: DiagonalPath) -> "GaussianMixture":
        """The same distribution in the path's coordinates χ = S⁻¹Uᵀx (event shape kept)."""
        basis64 = copy.deepcopy(path.basis).cpu().double()
        s = (torch.ones(self.event_shape, dtype=torch.float64) if path.scale is None
             else path.scale.cpu().double())

        def enc(v: Tensor) -> Tensor:  # rows of v (n, d) -> rows of v Mᵀ
            return (basis64.to_coeffs(v.reshape(-1, *self.event_shape)) / s).reshape(v.shape[0], -1)

        means = enc(self.means.flatten(1))
        covs = torch.stack([enc(enc(c).T) for c in self.covs])  # M Σ Mᵀ
        return GaussianMixture(self.weights, means.reshape(-1, *self.event_shape), 0.5 * (covs + covs.mT))

    def posterior_mean(self, chi_t: Tensor, alpha: Tensor, sigma: Tensor, factors: dict | None = None) -> Tensor:
        """E[χ | χ_t] for a mixture already in χ coordinates; all (B, *event_shape) (module docstring).

        Where every example has the same α and σ (a sampler's step: one time for the batch), C_k is factored
        once for the batch, d³/3 per component instead of B·d³/3, and the B right-hand sides share one
        triangular solve; ``factors`` (a dict the caller keeps) caches those factorisations by (α, σ), so
        the decodes of one time grid factor each time once. Per-example coefficients factor per example.
        """
        B = chi_t.shape[0]
        y, a, s = (v.expand_as(chi_t).reshape(B, -1).double() for v in (chi_t, alpha, sigma))
        mu = self.means.flatten(1).to(y.device)                            # (K, d)
        cov = self.covs.to(y.device)                                        # (K, d, d)
        r = y[:, None, :] - a[:, None, :] * mu[None]                       # (B, K, d)
        if B > 1 and bool((a == a[:1]).all() and (s == s[:1]).all()):     # one C_k for the whole batch
            L = self._shared_factor(a[0], s[0], cov, factors)              # (K, d, d)
            sol = torch.cholesky_solve(r.permute(1, 2, 0).contiguous(), L).permute(2, 0, 1)  # C⁻¹ r, B columns
            logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)[None]   # (1, K)
        else:
            C = a[:, None, :, None] * cov[None] * a[:, None, None, :]      # (B, K, d, d)
            C = C + torch.diag_embed(s.square())[:, None]
            L = torch.linalg.cholesky(C)
            sol = torch.cholesky_solve(r[..., None], L)[..., 0]            # C⁻¹ r
            logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
        logp = -0.5 * ((r * sol).sum(-1) + logdet + self.d * _LOG2PI) + self.weights.to(y.device).log()
        resp = torch.softmax(logp, dim=1)                                   # (B, K)
        # Σ̄_k (α ⊙ C⁻¹r) for all B at once: one (B, d) x (d, d) product per component reads Σ̄_k once (a
        # broadcast matrix-vector product per example read it B times: at d = 3072, 75 MB per example)
        cond = mu[None] + (a[:, None, :] * sol).transpose(0, 1).matmul(cov.mT).transpose(0, 1)
        return (resp[..., None] * cond).sum(1).reshape(chi_t.shape).to(chi_t.dtype)

    @staticmethod
    def _shared_factor(a: Tensor, s: Tensor, cov: Tensor, factors: dict | None,
                       max_bytes: int = 2 ** 31) -> Tensor:
        """Cholesky factors (K, d, d) of C_k = D_α Σ̄_k D_α + D_σ² for one (α, σ) of shape (d,), from
        ``factors`` when this (α, σ) was factored before; the cache is cleared before it would hold more
        than ``max_bytes`` of factors (2 GiB: 28 times at d = 3072, every time of a laptop grid)."""
        key = (str(a.device), a.detach().cpu().numpy().tobytes(), s.detach().cpu().numpy().tobytes())
        if factors is not None and key in factors:
            return factors[key]
        L = torch.linalg.cholesky(a[None, :, None] * cov * a[None, None, :] + torch.diag(s.square())[None])
        if factors is not None:
            if (len(factors) + 1) * L.numel() * L.element_size() > max_bytes:
                factors.clear()
            factors[key] = L
        return L

    def denoiser(self, path: DiagonalPath) -> Callable[..., Prediction]:
        """Exact ``model(chi_t, t, side="left") -> Prediction`` for this data under ``path``."""
        coords, factors = self.in_coords(path), {}  # factors: C_k's Cholesky factor per shared (α, σ)
        return _denoiser(path, lambda chi_t, c: coords.posterior_mean(chi_t, c.alpha, c.sigma, factors))

    @classmethod
    def fit(cls, x: Tensor, ridge: float = 0.0) -> "GaussianMixture":
        """The one-component mixture with the sample mean and covariance of ``x`` (N, *event_shape), plus
        ``ridge`` on the diagonal: the exact oracle of "a Gaussian with the data's first two moments", the
        data's conditional structure between components included (unlike :class:`DiagonalGaussian`).

        For 8-bit images ``ridge = (2/255)**2 / 12``, the variance of uniform dequantisation on [-1, 1],
        makes a rank-deficient sample covariance (images on a low-dimensional set) positive definite."""
        if x.dim() < 2 or x.shape[0] < 2:
            raise ValueError(f"fit needs at least two examples (N, *event_shape), got shape {tuple(x.shape)}")
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        flat = x.detach().cpu().double().flatten(1)
        cov = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])
        cov = cov + ridge * torch.eye(flat.shape[1], dtype=torch.float64)
        return cls(torch.ones(1), flat.mean(0).reshape(1, *x.shape[1:]), cov[None])

    def group_variances(self, grouping) -> list[dict]:
        """Per group j of ``grouping`` (generation order, 0 first; a one-component mixture already in the
        grouping's coordinates, e.g. ``in_coords(path)``): the mean marginal variance of its components,
        the mean conditional variance given the groups generated before it (the Schur complement
        Σ_jj − Σ_j< Σ_<<⁻¹ Σ_<j, the Gaussian law of group j once they are fixed) and the smallest eigenvalue
        of that conditional covariance. A groupwise flow starts group j from that conditional law, so a
        small conditional variance is what its forward ODE must expand to unit variance.
        Returns ``[{"group", "size", "marginal", "conditional", "min_eig"}, ...]``."""
        if self.weights.shape[0] != 1:
            raise ValueError("group_variances needs a one-component mixture (a Gaussian), e.g. GaussianMixture.fit")
        if tuple(grouping.event_shape) != self.event_shape:
            raise ValueError(f"grouping over {tuple(grouping.event_shape)} does not match events of shape "
                             f"{self.event_shape}")
        cov, rows = self.covs[0], []
        before = torch.zeros(self.d, dtype=torch.bool)
        for j in range(grouping.k):
            m = grouping.mask(j).flatten().cpu()
            s = cov[m][:, m]
            if before.any():
                b = cov[m][:, before]
                s = s - b @ torch.linalg.solve(cov[before][:, before], b.T)
            s = 0.5 * (s + s.T)
            rows.append({"group": j, "size": int(m.sum()), "marginal": float(cov[m][:, m].diagonal().mean()),
                         "conditional": float(s.diagonal().mean()), "min_eig": float(torch.linalg.eigvalsh(s)[0])})
            before |= m
        return rows

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        """Mixture mean (d,) and covariance (d, d), float64."""
        mu = self.means.flatten(1)
        m = (self.weights[:, None] * mu).sum(0)
        dev = mu - m
        cov = (self.weights[:, None, None] * (self.covs + dev[:, :, None] * dev[:, None, :])).sum(0)
        return m, cov


def _mixture_log_prob(x: Tensor, w: Tensor, mu: Tensor, cov: Tensor) -> Tensor:
    L = torch.linalg.cholesky(cov)                                          # (K, d, d)
    r = x[:, None, :] - mu[None]                                            # (B, K, d)
    sol = torch.linalg.solve_triangular(L[None], r[..., None], upper=False)[..., 0]
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    lp = -0.5 * (sol.square().sum(-1) + logdet + x.shape[1] * _LOG2PI)
    return torch.logsumexp(lp + w.log(), dim=1)


class DiagonalGaussian:
    """Gaussian data that is diagonal in a basis: x̄ = Uᵀx ~ N(m, diag v). Scales to any d.

    Examples: stationary Gaussian random fields in the Fourier basis (:class:`GaussianRandomField`);
    any Gaussian in its PCA basis.

    Parameters
    ----------
    basis : Basis
    mean, var : Tensor, shape event_shape
        Mean and variance of each basis coefficient x̄_i.
    """

    def __init__(self, basis: Basis, mean: Tensor, var: Tensor):
        if tuple(mean.shape) != tuple(basis.event_shape) or tuple(var.shape) != tuple(basis.event_shape):
            raise ValueError(f"mean {tuple(mean.shape)} and var {tuple(var.shape)} must have the basis' "
                             f"event shape {tuple(basis.event_shape)}")
        if not bool((var > 0).all()):
            raise ValueError("var must be positive everywhere")
        self.basis, self.mean, self.var = basis, mean.double(), var.double()
        self.event_shape = tuple(basis.event_shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact samples x = U(m + √v ⊙ ε), ε ~ N(0, I), shape (n, *event_shape), float32."""
        n = _positive_int(n, "the number of samples n")
        eps = tensors.randn((n, *self.event_shape), generator, dtype=torch.float64)
        return self.basis.from_coeffs((self.mean.to(eps) + self.var.to(eps).sqrt() * eps).float())

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log p(x) = Σ_i log N(x̄_i; m_i, v_i), shape (B,), x (B, *event_shape) (U orthogonal: no
        Jacobian). Computed in float64."""
        c = self.basis.to_coeffs(x.double())
        m, v = self.mean.to(c), self.var.to(c)
        lp = -0.5 * ((c - m).square() / v + v.log() + _LOG2PI)
        return lp.flatten(1).sum(1)

    def denoiser(self, path: DiagonalPath) -> Callable[..., Prediction]:
        """Exact denoiser: χ̂ = μ + v α/(α² v + σ²) (χ_t − α μ) per component, in χ coordinates; its
        ``divergence`` attribute is the closed-form tr ∂v/∂χ_t (:func:`x0_divergence`)."""
        probe = torch.randn((2, *self.event_shape), generator=torch.Generator().manual_seed(0))
        if path.basis is not self.basis and not torch.allclose(
                path.basis.cpu().to_coeffs(probe), self.basis.cpu().to_coeffs(probe), atol=1e-5):
            raise ValueError("this DiagonalGaussian is diagonal in its own basis, but the path uses a "
                             "different one: build the path with the same basis, or use GaussianMixture "
                             "with the full covariance U diag(var) Uᵀ")
        s = torch.ones_like(self.var) if path.scale is None else path.scale.to(self.var)
        mu, v = self.mean / s, self.var / s.square()

        def gain(chi_t: Tensor, c: Marginal) -> Tensor:                     # ∂χ̂_i/∂χ_{t,i}, diagonal
            vv = v.to(chi_t)
            return vv * c.alpha / (c.alpha.square() * vv + c.sigma.square())

        def x_hat(chi_t: Tensor, c: Marginal) -> Tensor:
            m = mu.to(chi_t)
            return m + gain(chi_t, c) * (chi_t - c.alpha * m)
        return _denoiser(path, x_hat, gain)


# --------------------------------------------------------------------------- Gaussian random fields
def _hw(size) -> tuple[int, int]:
    """``size`` (int or (H, W)) as (H, W) of positive ints, or ValueError."""
    pair = tuple(size) if isinstance(size, (tuple, list, torch.Size)) else (size, size)
    if len(pair) != 2:
        raise ValueError(f"size must be an int or a pair (H, W), got {size!r}")
    return _positive_int(pair[0], f"size {size!r}: H"), _positive_int(pair[1], f"size {size!r}: W")


def grf_spectrum(size, power: float = 2.0, *, k0: float = 1.0, sigma: float = 1 / 3,
                 dtype=torch.float64) -> Tensor:
    """Per-frequency variance S_k on the FFT grid, shape (H, W): S_k ∝ (|k|² + k0²)^(−power/2)
    with integer wave numbers k (``fftfreq · n``), normalised so the pixel variance mean(S) = σ².

    With the orthonormal DFT X = fft2(x, norm="ortho"), E|X_k|² = S_k and the field's covariance
    is circulant: C = Fᴴ diag(S) F. S_k = S_{−k}.
    """
    if not (k0 > 0 and sigma > 0 and math.isfinite(k0) and math.isfinite(sigma)):
        raise ValueError(f"k0 and sigma must be positive and finite (got k0={k0}, sigma={sigma})")
    if not math.isfinite(power):
        raise ValueError(f"power must be a finite number, got {power}")
    H, W = _hw(size)
    ky = torch.fft.fftfreq(H, dtype=dtype) * H
    kx = torch.fft.fftfreq(W, dtype=dtype) * W
    S = (ky[:, None] ** 2 + kx[None, :] ** 2 + k0**2) ** (-power / 2)
    return S * (sigma**2 / S.mean())


class GaussianRandomField(DiagonalGaussian):
    """A stationary periodic Gaussian random field: zero-mean :class:`DiagonalGaussian` in the Fourier basis.

    Per channel (channels independent), x = F⁻¹(√S ⊙ F w) with w white and S = :func:`grf_spectrum`, so
    the covariance is circulant, C = Fᴴ diag(S) F. Since S_k = S_{−k}, the real Fourier (Hartley)
    coefficients c = Re F x − Im F x of :class:`gdmkit.bases.Fourier` are independent with Var c_k = S_k:
    the field is DiagonalGaussian(Fourier((C, H, W)), 0, S), with its exact ``log_prob`` and
    ``denoiser(path)`` (exact E[χ | χ_t] under any path whose basis is ``self.basis``).

    Parameters
    ----------
    size : int or (H, W)
    channels : int
        C, independent channels.
    power, k0, sigma : float
        The spectrum S_k ∝ (|k|² + k0²)^(−power/2) with pixel variance σ² (see :func:`grf_spectrum`).
        Not clipped (clipping would break the exact density); with σ = 1/3 about 99.7 % of pixels lie in
        [-1, 1].
    """

    def __init__(self, size, channels: int = 1, power: float = 2.0, k0: float = 1.0, sigma: float = 1 / 3):
        H, W = _hw(size)
        C = _positive_int(channels, "channels")
        S = grf_spectrum((H, W), power, k0=k0, sigma=sigma)                 # (H, W)
        basis = Fourier((C, H, W))
        super().__init__(basis, torch.zeros(C, H, W, dtype=torch.float64), S.expand(C, H, W).contiguous())
        self.spectrum, self.power, self.k0, self.sigma = S, float(power), float(k0), float(sigma)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n fields (n, C, H, W), float32: x = F⁻¹(√S ⊙ F w), w ~ N(0, I) drawn in pixel space (float64).

        The law of DiagonalGaussian.sample (x = U(√v ⊙ ε) with ε = Uᵀw white), computed with the complex
        FFT: these are the numbers data.gaussian_random_field has always drawn.
        """
        n = _positive_int(n, "the number of samples n")
        w = tensors.randn((n, *self.event_shape), generator, dtype=torch.float64)
        X = torch.fft.fft2(w, norm="ortho") * self.spectrum.to(w.device).sqrt()
        return torch.fft.ifft2(X, norm="ortho").real.float()
