"""Bases with structure from data or scale: the PCA basis (fitted) and multi-level Haar wavelets."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import config, tensors
from .core import Basis, _eigh_descending, _leaf, _rank


@config.register
class PCA(Basis):
    """PCA basis of the colour-averaged data, applied to every channel (GUD §4.4, App. B).

    Build with ``PCA.fit(data)``. ``to_coeffs``/``from_coeffs`` are the plain rotation Uᵀx / Uc: no
    mean removal and no scaling (centering is data preprocessing; scaling is the prior).
    ``whiten=True`` stores ``scale`` = √variance (floored at ``eps``): the prior std S of the
    variance-matching prior (GUD §4.4, M = S⁻¹U); otherwise ``scale`` is None.

    Parameters
    ----------
    U : Tensor, shape (P, P)
        Orthogonal, columns = principal directions (P = H·W for images, d for vectors).
    mean : Tensor, shape event_shape
        Data mean.
    eigenvalues : Tensor, shape (P,)
        Descending eigenvalues of the colour-averaged covariance.
    variance : Tensor, shape event_shape
        Per-channel, per-component variance of the centred data in this basis (label "variance").
    whiten : bool
        Store ``scale`` = max(√variance, eps).
    eps : float
        Floor of ``scale`` (default 1e-4).

    ``to_config()`` holds these six arguments, so ``from_config`` rebuilds the fitted basis without data.
    """

    def __init__(self, U: Tensor, mean: Tensor, eigenvalues: Tensor, variance: Tensor,
                 whiten: bool = False, eps: float = 1e-4):
        if not eps > 0 or not math.isfinite(eps):
            raise ValueError(f"PCA eps (the floor of the prior std) must be positive and finite, got {eps}")
        super().__init__(tuple(mean.shape))
        self.whiten, self.eps = bool(whiten), float(eps)
        self.register_buffer("U", U.to(torch.float64).contiguous())  # row-major, as a checkpoint restores it
        self.register_buffer("mean", mean.contiguous())
        self.register_buffer("eigenvalues", eigenvalues.contiguous())
        self.register_buffer("scale", variance.sqrt().clamp_min(eps) if whiten else None)
        self._set_labels(persistent=True, variance=variance)
        per_channel = self.event_shape[1:] if mean.dim() == 3 else self.event_shape
        self._set_labels(rank=torch.arange(U.shape[0], device=U.device).reshape(per_channel))
        if mean.dim() == 3:
            self._set_labels(channel=torch.arange(mean.shape[0], device=U.device)[:, None, None])

    @classmethod
    def fit(cls, x: Tensor, whiten: bool = False, eps: float = 1e-4) -> "PCA":
        """Fit on data x, shape (N, C, H, W) (colour-averaged PCA on H·W) or (N, d) (plain PCA).

        Σ = cov(x̃) of the colour-averaged, centred data x̃, shape (N, P); Σ = U diag(λ) Uᵀ by
        ``eigh`` in float64, λ descending, signs fixed (first non-negligible entry positive).
        x : Tensor, shape (N, C, H, W) or (N, d), N ≥ 2
        whiten : bool  store ``scale`` = max(√variance, eps), the variance-matching prior std
        """
        if x.dim() not in (2, 4):
            raise ValueError(f"PCA.fit expects data of shape (N, C, H, W) or (N, d), got "
                             f"{tuple(x.shape)}; stack the examples along the first axis")
        if x.shape[0] < 2:
            raise ValueError(f"PCA.fit needs at least 2 examples to estimate a covariance, got "
                             f"{x.shape[0]}; pass more data")
        bad = ~torch.isfinite(x.detach())
        if bool(bad.any()):
            rows = int(bad.flatten(1).any(1).sum())
            raise ValueError(f"PCA.fit got {int(bad.sum())} non-finite values (NaN or inf) in {rows} of "
                             f"{x.shape[0]} examples; remove or impute them before fitting, e.g. keep "
                             "x[torch.isfinite(x).flatten(1).all(1)]")
        x64 = x.detach().to(torch.float64)
        flat = x64.mean(dim=1).flatten(1) if x.dim() == 4 else x64  # (N, P) colour-averaged
        lam, U = _eigh_descending(torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1]))
        mean = x64.mean(dim=0)  # event_shape
        centred = (x64 - mean).flatten(2) if x.dim() == 4 else x64 - mean  # (N, C, P) or (N, d)
        variance = (centred @ U).var(dim=0).reshape(mean.shape)
        dtype = x.dtype
        return cls(U, mean.to(dtype), lam.to(dtype), variance.to(dtype), whiten=whiten, eps=eps)

    def _config_args(self) -> dict:
        return {"U": _leaf(self.U), "mean": _leaf(self.mean), "eigenvalues": _leaf(self.eigenvalues),
                "variance": _leaf(self.label_variance), "whiten": self.whiten, "eps": self.eps}

    def _to(self, x: Tensor) -> Tensor:
        flat = x.flatten(-2) if x.dim() == 4 else x  # (B, C, P) or (B, d)
        return (flat @ self._matrix_as("U", x)).reshape(x.shape)

    def _from(self, c: Tensor) -> Tensor:
        flat = c.flatten(-2) if c.dim() == 4 else c
        return (flat @ self._matrix_as("U", c, transpose=True)).reshape(c.shape)


@config.register
class Haar(Basis):
    """Multi-level orthonormal 2-D Haar wavelets per channel, GUD App. D eq. (26)–(28).

    Level n: row transform pairs the first spatial index, L_{i,k} = (X_{2i,k} + X_{2i+1,k})/√2 and
    H_{i,k} with −; column transform pairs the second index into LL, LH, HL, HH (eq. 26);
    HF^(n) = (LH, HL, HH) (eq. 27); recurse on X^(n) = LL^(n) (eq. 28). Mallat layout: with
    h = H/2ⁿ, w = W/2ⁿ, LL in [:h, :w], LH in [:h, w:2w], HL in [h:2h, :w], HH in [h:2h, w:2w].
    Labels: "level" (1 finest … levels; LL gets ``levels``), "band" (0 LL, 1 LH, 2 HL, 3 HH),
    "row"/"column" (i, j within the sub-band), "channel", "rank" (LL, then HF^(levels), …, HF^(1);
    within a level by band, then row-major).
    """

    def __init__(self, shape: tuple[int, int, int], levels: int):
        C, H, W = tensors.image_shape(shape, "Haar")
        if int(levels) != levels or levels < 1:
            raise ValueError(f"Haar needs levels ≥ 1 (an integer), got {levels}; use levels=1 for "
                             "one split into LL, LH, HL, HH")
        f = 2**levels
        if H % f or W % f:
            raise ValueError(f"Haar with {levels} levels needs H and W divisible by {f}, got "
                             f"{H}×{W}; crop or pad the images, or use fewer levels")
        super().__init__((C, H, W))
        self.levels = int(levels)
        level, band, row, col = (torch.zeros(H, W, dtype=torch.long) for _ in range(4))
        for n in range(self.levels, 0, -1):  # the sub-bands of different levels are disjoint
            h, w = H >> n, W >> n
            for b, (r0, c0) in enumerate([(0, 0), (0, w), (h, 0), (h, w)]):
                if b == 0 and n != self.levels:
                    continue  # LL^(n) for n < levels is split further
                level[r0:r0 + h, c0:c0 + w] = n
                band[r0:r0 + h, c0:c0 + w] = b
                row[r0:r0 + h, c0:c0 + w] = torch.arange(h)[:, None]
                col[r0:r0 + h, c0:c0 + w] = torch.arange(w)[None, :]
        block = torch.where(band == 0, 0, self.levels + 1 - level)  # LL, HF^(levels), …, HF^(1)
        self._set_labels(level=level, band=band, row=row, column=col,
                         rank=_rank(block, band, row, col), channel=torch.arange(C)[:, None, None])

    def _config_args(self) -> dict:
        return {"shape": list(self.event_shape), "levels": self.levels}

    def _to(self, x: Tensor) -> Tensor:
        out = x.clone()
        H, W = self.event_shape[1:]
        r = math.sqrt(0.5)
        for n in range(1, self.levels + 1):
            X = out[..., : H >> (n - 1), : W >> (n - 1)]  # X^(n-1) = LL^(n-1), eq. (28)
            L, Hi = (X[..., 0::2, :] + X[..., 1::2, :]) * r, (X[..., 0::2, :] - X[..., 1::2, :]) * r
            LL, LH = (L[..., 0::2] + L[..., 1::2]) * r, (L[..., 0::2] - L[..., 1::2]) * r
            HL, HH = (Hi[..., 0::2] + Hi[..., 1::2]) * r, (Hi[..., 0::2] - Hi[..., 1::2]) * r
            out[..., : H >> (n - 1), : W >> (n - 1)] = torch.cat(
                [torch.cat([LL, LH], dim=-1), torch.cat([HL, HH], dim=-1)], dim=-2)
        return out

    def _from(self, c: Tensor) -> Tensor:
        out = c.clone()
        H, W = self.event_shape[1:]
        r = math.sqrt(0.5)
        for n in range(self.levels, 0, -1):
            h, w = H >> n, W >> n
            LL, LH = out[..., :h, :w], out[..., :h, w:2 * w]
            HL, HH = out[..., h:2 * h, :w], out[..., h:2 * h, w:2 * w]
            L = _interleave((LL + LH) * r, (LL - LH) * r, dim=-1)  # undo the column transform
            Hi = _interleave((HL + HH) * r, (HL - HH) * r, dim=-1)
            out[..., : 2 * h, : 2 * w] = _interleave((L + Hi) * r, (L - Hi) * r, dim=-2)  # rows
        return out


def _interleave(even: Tensor, odd: Tensor, dim: int) -> Tensor:
    """Tensor whose entries along ``dim`` alternate even[0], odd[0], even[1], …"""
    stacked = torch.stack([even, odd], dim=dim)  # (..., n, 2) along dim
    shape = list(even.shape)
    shape[dim] *= 2
    return stacked.reshape(shape)


