"""Exact posterior means E[χ | χ_t] for Gaussian mixtures and Gaussian data, under any diagonal path.

For data x ~ Σ_k π_k N(μ_k, Σ_k) and χ = M x with M = S⁻¹Uᵀ (basis U, prior scale S), the coordinates
are a mixture with μ̄_k = M μ_k, Σ̄_k = M Σ_k Mᵀ. Under χ_t = α ⊙ χ + σ ⊙ z̄ (GDM eq. 11, GUD eq. 14):

    χ_t | k ~ N(α ⊙ μ̄_k, C_k),   C_k = D_α Σ̄_k D_α + D_σ²
    E[χ | χ_t, k] = μ̄_k + Σ̄_k D_α C_k⁻¹ (χ_t − α ⊙ μ̄_k)
    E[χ | χ_t] = Σ_k r_k(χ_t) E[χ | χ_t, k],  r_k ∝ π_k N(χ_t; α ⊙ μ̄_k, C_k)

This is the optimal denoiser x_θ* of GDM Prop. 3.3 and the optimal score of GUD eq. 11; its velocity
is exact ground truth for samplers, likelihoods and the papers' claims.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import Tensor

from .bases import Basis
from .paths import DiagonalPath, Prediction, from_x0

__all__ = ["GaussianMixture", "DiagonalGaussian"]

_LOG2PI = math.log(2 * math.pi)


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
            raise ValueError(f"weights, means and covs must share K; got {K}, {means.shape[0]}, {covs.shape[0]}")
        self.event_shape = tuple(means.shape[1:])
        d = int(torch.tensor(self.event_shape).prod()) if self.event_shape else 1
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
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.d, generator=generator, dtype=torch.float64)
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
        s = torch.ones(self.event_shape, dtype=torch.float64) if path.scale is None else path.scale.cpu().double()

        def enc(v: Tensor) -> Tensor:  # rows of v (n, d) -> rows of v Mᵀ
            return (basis64.to_coeffs(v.reshape(-1, *self.event_shape)) / s).reshape(v.shape[0], -1)

        means = enc(self.means.flatten(1))
        covs = torch.stack([enc(enc(c).T) for c in self.covs])  # M Σ Mᵀ
        return GaussianMixture(self.weights, means.reshape(-1, *self.event_shape), 0.5 * (covs + covs.mT))

    def posterior_mean(self, chi_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """E[χ | χ_t] for a mixture already in χ coordinates; all (B, *event_shape) (module docstring)."""
        B = chi_t.shape[0]
        y, a, s = (v.expand_as(chi_t).reshape(B, -1).double() for v in (chi_t, alpha, sigma))
        mu = self.means.flatten(1).to(y.device)                            # (K, d)
        cov = self.covs.to(y.device)                                        # (K, d, d)
        C = a[:, None, :, None] * cov[None] * a[:, None, None, :]          # (B, K, d, d)
        C = C + torch.diag_embed(s.square())[:, None]
        L = torch.linalg.cholesky(C)
        r = y[:, None, :] - a[:, None, :] * mu[None]                       # (B, K, d)
        sol = torch.cholesky_solve(r[..., None], L)[..., 0]                # C⁻¹ r
        logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
        logp = -0.5 * ((r * sol).sum(-1) + logdet + self.d * _LOG2PI) + self.weights.to(y.device).log()
        resp = torch.softmax(logp, dim=1)                                   # (B, K)
        cond = mu[None] + (cov[None] @ (a[:, None, :] * sol)[..., None])[..., 0]
        return (resp[..., None] * cond).sum(1).reshape(chi_t.shape).to(chi_t.dtype)

    def denoiser(self, path: DiagonalPath) -> Callable[..., Prediction]:
        """Exact ``model(chi_t, t, side="left") -> Prediction`` for this data under ``path``."""
        coords = self.in_coords(path)

        def model(chi_t: Tensor, t: Tensor, side: str = "left") -> Prediction:
            t = torch.as_tensor(t, device=chi_t.device, dtype=chi_t.dtype)
            t = t.expand(chi_t.shape[0]) if t.ndim == 0 else t
            c = path.schedule.marginal(t, side)
            x_hat = coords.posterior_mean(chi_t, c.alpha, c.sigma)
            return from_x0(chi_t, x_hat, c)
        return model

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

    Examples: stationary Gaussian random fields in the Fourier basis; any Gaussian in its PCA basis.

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
        eps = torch.randn((n, *self.event_shape), generator=generator, dtype=torch.float64)
        return self.basis.from_coeffs((self.mean + self.var.sqrt() * eps).float())

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log p(x), shape (B,) (U orthogonal: no Jacobian)."""
        c = self.basis.to_coeffs(x).double()
        lp = -0.5 * ((c - self.mean).square() / self.var + self.var.log() + _LOG2PI)
        return lp.flatten(1).sum(1)

    def denoiser(self, path: DiagonalPath) -> Callable[..., Prediction]:
        """Exact denoiser: χ̂ = μ + v α/(α² v + σ²) (χ_t − α μ) per component, in χ coordinates."""
        probe = torch.randn((2, *self.event_shape), generator=torch.Generator().manual_seed(0))
        if path.basis is not self.basis and not torch.allclose(
                path.basis.cpu().to_coeffs(probe), self.basis.cpu().to_coeffs(probe), atol=1e-5):
            raise ValueError("this DiagonalGaussian is diagonal in its own basis, but the path uses a "
                             "different one: build the path with the same basis, or use GaussianMixture "
                             "with the full covariance U diag(var) Uᵀ")
        s = torch.ones_like(self.var) if path.scale is None else path.scale.double()
        mu, v = self.mean / s, self.var / s.square()

        def model(chi_t: Tensor, t: Tensor, side: str = "left") -> Prediction:
            t = torch.as_tensor(t, device=chi_t.device, dtype=chi_t.dtype)
            t = t.expand(chi_t.shape[0]) if t.ndim == 0 else t
            c = path.schedule.marginal(t, side)
            m, vv = mu.to(chi_t), v.to(chi_t)
            x_hat = m + vv * c.alpha / (c.alpha.square() * vv + c.sigma.square()) * (chi_t - c.alpha * m)
            return from_x0(chi_t, x_hat, c)
        return model
