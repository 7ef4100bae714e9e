"""Fixed transforms: the orthonormal DCT-II, the Gaussian-blur eigenbasis and the real Fourier basis.

Each acts on every channel of (C, H, W) images separately, one spatial axis at a time, and never forms
the dense d×d matrix.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import config, tensors
from .core import Basis, _eigh_descending, _rank


def _makhoul_perm(n: int, device) -> Tensor:
    """Makhoul (1980) reordering v = (x_0, x_2, x_4, …, x_5, x_3, x_1): evens, odds reversed."""
    idx = torch.arange(n, device=device)
    return torch.cat([idx[0::2], idx[1::2].flip(0)])


def _dct_scale_twiddle(n: int, x: Tensor) -> tuple[Tensor, Tensor]:
    k = torch.arange(n, device=x.device, dtype=x.dtype)
    s = torch.full_like(k, math.sqrt(2.0 / n))
    s[0] = math.sqrt(1.0 / n)  # orthonormal DCT-II scale s_k
    return s, torch.polar(torch.ones_like(k), -math.pi * k / (2 * n))  # e^{-iπk/2N}


def dct_ii(x: Tensor) -> Tensor:
    """Orthonormal DCT-II along the last axis via one FFT (Makhoul's reordering).

    c_k = s_k Σ_n x_n cos(πk(2n+1)/2N) = s_k Re(e^{-iπk/2N} FFT(v)_k), s_0 = √(1/N), s_k = √(2/N).
    x : Tensor, shape (..., N) -> Tensor, shape (..., N)
    """
    n = x.shape[-1]
    s, w = _dct_scale_twiddle(n, x)
    V = torch.fft.fft(x.index_select(-1, _makhoul_perm(n, x.device)), dim=-1)
    return (V * w).real * s


def idct_ii(c: Tensor) -> Tensor:
    """Inverse of ``dct_ii`` (orthonormal DCT-III) via one inverse FFT.

    With X_k = c_k / s_k, W_k = e^{-iπk/2N} V_k satisfies W_k = X_k − i X_{N−k} (X_N = 0), so
    V = e^{iπk/2N} W, v = IFFT(V) and x is v with Makhoul's reordering undone.
    c : Tensor, shape (..., N) -> Tensor, shape (..., N)
    """
    n = c.shape[-1]
    s, w = _dct_scale_twiddle(n, c)
    X = c / s
    X_rev = torch.cat([torch.zeros_like(X[..., :1]), X[..., 1:].flip(-1)], dim=-1)  # X_{N-k}
    v = torch.fft.ifft(torch.complex(X, -X_rev) * w.conj(), dim=-1).real
    return v.index_select(-1, torch.argsort(_makhoul_perm(n, c.device)))


def dct_matrix(n: int) -> Tensor:
    """The orthonormal DCT-II matrix C[k, n] = s_k cos(πk(2n+1)/2N), float64, shape (N, N)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(n, dtype=torch.float64)[None, :]
    s = torch.full((n, 1), math.sqrt(2.0 / n), dtype=torch.float64)
    s[0] = math.sqrt(1.0 / n)
    return s * torch.cos(math.pi * k * (2 * j + 1) / (2 * n))


@config.register
class DCT(Basis):
    """Orthonormal 2-D DCT-II per channel (GDM App. A.4 "DC basis"), one axis at a time.

    Coefficient (c, k_h, k_w) = Σ C_H[k_h, n_h] C_W[k_w, n_w] x[c, n_h, n_w] with
    C_N[k, n] = s_k cos(πk(2n+1)/2N). Labels: "kh", "kw", "frequency" = √(k_h²+k_w²), "channel",
    "rank" by (k_h²+k_w², k_h, k_w) ascending, i.e. low to high frequency.

    ``method="matmul"`` (default) applies the N×N matrices C_H, C_W per axis (two small matmuls, the
    fastest route on CPU and GPU for N up to a few hundred); ``method="fft"`` uses one FFT per axis
    (Makhoul), O(N log N) per line, for very large sides. Neither forms the dense d×d matrix.
    """

    def __init__(self, shape: tuple[int, int, int], method: str = "matmul"):
        C, H, W = tensors.image_shape(shape, "DCT")
        super().__init__((C, H, W))
        if method not in ("matmul", "fft"):
            raise ValueError(f"DCT method must be 'matmul' or 'fft', got {method!r}")
        self.method = method
        self.register_buffer("C_h", dct_matrix(H), persistent=False)
        self.register_buffer("C_w", dct_matrix(W), persistent=False)
        kh, kw = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        k2 = kh**2 + kw**2
        self._set_labels(kh=kh, kw=kw, frequency=k2.to(torch.get_default_dtype()).sqrt(),
                         rank=_rank(k2, kh, kw),
                         channel=torch.arange(C)[:, None, None])

    def _config_args(self) -> dict:
        return {"shape": list(self.event_shape), "method": self.method}

    def _to(self, x: Tensor) -> Tensor:
        if self.method == "fft":
            return dct_ii(dct_ii(x).transpose(-1, -2)).transpose(-1, -2)  # along W, then along H
        return self.C_h.to(x) @ x @ self.C_w.to(x).T

    def _from(self, c: Tensor) -> Tensor:
        if self.method == "fft":
            return idct_ii(idct_ii(c.transpose(-1, -2)).transpose(-1, -2))
        return self.C_h.to(c).T @ c @ self.C_w.to(c)


def gaussian_blur_matrix(n: int, sigma: float) -> Tensor:
    """1-D Gaussian blur as a symmetric (n, n) matrix, float64, with half-sample reflect boundaries.

    W[i, j] = Σ_k g_k [ρ(i + k) = j] with g_k ∝ exp(−k²/2σ²) for |k| ≤ ⌈4σ⌉ (normalised) and ρ the
    half-sample reflection (… c b a | a b c … , period 2n). W = Toeplitz + Hankel is symmetric and its
    rows sum to one; it is diagonalised by the DCT-II basis.
    """
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be positive and finite (the blur's std in pixels), got {sigma}")
    if n < 1:
        raise ValueError(f"the blur matrix needs n >= 1, got {n}")
    radius = max(1, math.ceil(4 * sigma))
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (k / sigma) ** 2)
    g = g / g.sum()
    W = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n)
    for kk, gk in zip(k.long().tolist(), g.tolist()):
        m = (rows + kk) % (2 * n)
        j = torch.where(m >= n, 2 * n - 1 - m, m)
        W.index_put_((rows, j), torch.full((n,), gk, dtype=torch.float64), accumulate=True)
    return W


@config.register
class GaussianBlur(Basis):
    """Eigenbasis of a separable Gaussian blur (GDM App. A.4; Lee et al. 2022), per channel.

    Per axis, W = Q diag(λ) Qᵀ (``gaussian_blur_matrix``), λ descending (largest = least blurred =
    lowest frequency), eigenvector signs fixed (first non-negligible entry positive). Coefficients
    x̄ = Q_Hᵀ X Q_W, so the 2-D blur W_H X W_W has coefficients (λ_h λ_wᵀ) ⊙ x̄. GDM writes
    W = ŨŨᵀ with Ũ = Q diag(√λ); the orthogonal U used here is Q. Labels: "eigenvalue" = λ_h λ_w,
    "kh", "kw" (eigen-index per axis), "channel", "rank" by eigenvalue descending, ties by position.
    With reflect boundaries Q equals the DCT-II basis whenever the eigenvalues are distinct.

    shape : (C, H, W);  sigma : float, std of the Gaussian kernel in pixels (default 1.0).
    """

    def __init__(self, shape: tuple[int, int, int], sigma: float = 1.0):
        C, H, W = tensors.image_shape(shape, "GaussianBlur")
        super().__init__((C, H, W))
        self.sigma = float(sigma)
        lam_h, Q_h = _eigh_descending(gaussian_blur_matrix(H, sigma))
        lam_w, Q_w = _eigh_descending(gaussian_blur_matrix(W, sigma))
        for name, t in dict(Q_h=Q_h, Q_w=Q_w, lambda_h=lam_h, lambda_w=lam_w).items():
            self.register_buffer(name, t)
        eig = lam_h[:, None] * lam_w[None, :]  # (H, W)
        kh, kw = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        self._set_labels(eigenvalue=eig.to(torch.get_default_dtype()), kh=kh, kw=kw,
                         rank=_rank(-eig), channel=torch.arange(C)[:, None, None])

    def _config_args(self) -> dict:
        return {"shape": list(self.event_shape), "sigma": self.sigma}

    def _to(self, x: Tensor) -> Tensor:
        return self.Q_h.to(x).T @ x @ self.Q_w.to(x)  # Q_Hᵀ X Q_W per channel

    def _from(self, c: Tensor) -> Tensor:
        return self.Q_h.to(c) @ c @ self.Q_w.to(c).T


@config.register
class Fourier(Basis):
    """Real orthonormal Fourier basis (GUD §5.1): the 2-D discrete Hartley transform per channel.

    c = Re F − Im F with F = fft2(x, norm="ortho"), i.e. c_k = Σ_n x_n cas(2π k·n) / √(HW) with
    k·n = k_h n_h/H + k_w n_w/W and cas = cos + sin: real, orthonormal and its own inverse.
    cas(k·n) and cas(−k·n) span the same plane as cos(k·n) and sin(k·n), and a diagonal schedule
    that depends on |k| acts on that plane as a multiple of the identity, so it gives the same
    diffusion as in a cos/sin Fourier basis.
    Labels: "kh", "kw" (signed, fftfreq·N), "frequency" = |k| = √(k_h²+k_w²), "channel",
    "rank" by |k| then position.
    """

    def __init__(self, shape: tuple[int, int, int]):
        C, H, W = tensors.image_shape(shape, "Fourier")
        super().__init__((C, H, W))
        kh, kw = torch.meshgrid((torch.fft.fftfreq(H) * H).round().long(),
                                (torch.fft.fftfreq(W) * W).round().long(), indexing="ij")
        k2 = kh**2 + kw**2
        self._set_labels(kh=kh, kw=kw, frequency=k2.to(torch.get_default_dtype()).sqrt(),
                         rank=_rank(k2), channel=torch.arange(C)[:, None, None])

    def _config_args(self) -> dict:
        return {"shape": list(self.event_shape)}

    def _to(self, x: Tensor) -> Tensor:
        F = torch.fft.fft2(x, norm="ortho")
        return F.real - F.imag

    def _from(self, c: Tensor) -> Tensor:
        return self._to(c)  # the Hartley transform is an involution


