"""Orthogonal bases: the change of variables x̄ = Uᵀx in which a diagonal path acts.

GDM eq. (11) noises the coefficients x̄ = Uᵀx of an orthogonal U component by component; GUD
eq. (7) writes the same with M = S⁻¹U (here S = I: scaling belongs to the prior, see ``PCA``).
Every basis maps (B, *event_shape) -> (B, *event_shape) and carries per-component ``labels()``
(frequency, level, column, variance, ...) whose ``"rank"`` orders the components within a channel
(0 = lowest frequency / highest variance / first pixel); groupings and schedules index that rank.
Image bases take ``shape=(C, H, W)`` and act on each channel separately, one axis at a time.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

_MAX_DENSE = 4096  # largest d for which Basis.matrix() builds a dense (d, d) matrix


def _rank(*keys: Tensor) -> Tensor:
    """Rank of each entry sorted by ``keys`` (first key most significant), ties by flat index."""
    order = torch.arange(keys[0].numel())
    for key in reversed(keys):  # successive stable sorts = lexicographic sort
        order = order[torch.sort(key.flatten()[order], stable=True).indices]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank.reshape(keys[0].shape)


def _fix_signs(Q: Tensor) -> Tensor:
    """Flip columns of Q so that each column's first non-negligible entry is positive."""
    big = Q.abs() > 1e-6 * Q.abs().amax(dim=0, keepdim=True)
    first = big.to(torch.int8).argmax(dim=0)  # first True per column
    return Q * torch.sign(Q[first, torch.arange(Q.shape[1])])


def _eigh_descending(A: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending) and sign-fixed eigenvectors (columns) of symmetric A, float64."""
    lam, Q = torch.linalg.eigh(A.to(torch.float64))
    lam, Q = lam.flip(0), Q.flip(1)
    return lam, _fix_signs(Q)


def _image_shape(shape, name: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{name} expects shape=(C, H, W) with positive sizes, got {shape}; "
                         "pass the per-example shape of an image batch (B, C, H, W)")
    return shape


class Basis(torch.nn.Module):
    """Orthogonal change of basis U (GDM eq. 11, GUD eq. 7 with S = I): coefficients x̄ = Uᵀx.

    Subclasses implement ``_to(x)`` and ``_from(c)``; constant matrices and labels are buffers so
    ``.to(device)`` moves them. Transforms preserve dtype and device of their input.
    """

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self._label_names: list[str] = []

    def _set_labels(self, persistent: bool = False, **labels: Tensor) -> None:
        for name, value in labels.items():
            if tuple(value.shape) != self.event_shape:
                value = value.expand(self.event_shape)  # (H, W) -> (C, H, W), same per channel
            self.register_buffer(f"label_{name}", value.contiguous(), persistent=persistent)
            if name not in self._label_names:
                self._label_names.append(name)

    def _check(self, x: Tensor) -> None:
        name = type(self).__name__
        if x.dim() < 1 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"{name} basis expects {self.event_shape} per example but got "
                             f"{tuple(x.shape[1:])}; build the basis with the data's shape")
        if not x.is_floating_point():
            raise ValueError(f"{name} basis expects a floating-point tensor, got {x.dtype}; "
                             "convert with x.float()")

    def to_coeffs(self, x: Tensor) -> Tensor:
        """Coefficients x̄ = Uᵀx.

        x : Tensor, shape (B, *event_shape) -> Tensor, shape (B, *event_shape)
        """
        self._check(x)
        return self._to(x)

    def from_coeffs(self, c: Tensor) -> Tensor:
        """Inverse transform x = U c.

        c : Tensor, shape (B, *event_shape) -> Tensor, shape (B, *event_shape)
        """
        self._check(c)
        return self._from(c)

    def labels(self) -> dict[str, Tensor]:
        """Per-component labels, each of shape ``event_shape``; always has ``"rank"``."""
        return {name: getattr(self, f"label_{name}") for name in self._label_names}

    def matrix(self) -> Tensor:
        """Dense U, shape (d, d), column j = U e_j; for tests and small d only (d ≤ 4096)."""
        d = math.prod(self.event_shape)
        if d > _MAX_DENSE:
            raise ValueError(f"matrix() builds a dense {d}×{d} matrix, more than the {_MAX_DENSE}"
                             " allowed; use to_coeffs/from_coeffs, or a smaller shape in tests")
        eye = torch.eye(d, dtype=torch.float64, device=self.label_rank.device)
        return self.from_coeffs(eye.reshape(d, *self.event_shape)).reshape(d, d).T

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}"

    def _to(self, x: Tensor) -> Tensor:  # x̄ = Uᵀx on a checked input
        raise NotImplementedError

    def _from(self, c: Tensor) -> Tensor:  # x = U x̄ on a checked input
        raise NotImplementedError


class Pixel(Basis):
    """Identity basis U = I: coefficients are pixels; rank is the row-major index within a channel.

    3-D shapes (C, H, W) also get labels "channel", "row", "column"; 2-D shapes "row", "column".
    """

    def __init__(self, event_shape: tuple[int, ...] | int):
        super().__init__((event_shape,) if isinstance(event_shape, int) else event_shape)
        shape = self.event_shape
        spatial = shape[1:] if len(shape) == 3 else shape
        self._set_labels(rank=torch.arange(math.prod(spatial)).reshape(spatial))
        if len(shape) in (2, 3):
            rows, cols = torch.meshgrid(torch.arange(spatial[0]), torch.arange(spatial[1]),
                                        indexing="ij")
            self._set_labels(row=rows, column=cols)
        if len(shape) == 3:
            self._set_labels(channel=torch.arange(shape[0])[:, None, None].expand(shape))

    def _to(self, x: Tensor) -> Tensor:
        return x.clone()

    def _from(self, c: Tensor) -> Tensor:
        return c.clone()


class Orthogonal(Basis):
    """Any orthogonal basis of vectors, event shape (d,); ``matrix[:, i]`` is the i-th basis vector.

    matrix : Tensor, shape (d, d), orthogonal (checked: max |UᵀU − I| ≤ 1e-4); stored in float64.
    """

    def __init__(self, matrix: Tensor):
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"Orthogonal needs a square (d, d) matrix, got shape "
                             f"{tuple(matrix.shape)}; pass the basis vectors as columns")
        U = matrix.detach().to(torch.float64)
        err = (U.T @ U - torch.eye(U.shape[0], dtype=U.dtype, device=U.device)).abs().max()
        if err > 1e-4:
            raise ValueError(f"matrix is not orthogonal: max |UᵀU − I| = {err:.3g} > 1e-4; "
                             "orthonormalise it (e.g. torch.linalg.qr) or use Orthogonal.random")
        super().__init__((U.shape[0],))
        self.register_buffer("U", U)
        self._set_labels(rank=torch.arange(U.shape[0], device=U.device))

    @classmethod
    def random(cls, d: int, generator: torch.Generator | None = None) -> "Orthogonal":
        """Random orthogonal basis: QR of a (d, d) standard Gaussian, signs making diag R > 0."""
        A = torch.randn(d, d, generator=generator, dtype=torch.float64)
        Q, R = torch.linalg.qr(A)
        return cls(Q * torch.sign(torch.diagonal(R)))

    def _to(self, x: Tensor) -> Tensor:
        return x @ self.U.to(x)  # (B, d) @ (d, d): row-vector form of Uᵀx

    def _from(self, c: Tensor) -> Tensor:
        return c @ self.U.to(c).T


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
        C, H, W = _image_shape(shape, "DCT")
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
    if sigma <= 0:
        raise ValueError(f"sigma must be positive (the blur's std in pixels), got {sigma}")
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
        C, H, W = _image_shape(shape, "GaussianBlur")
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

    def _to(self, x: Tensor) -> Tensor:
        return self.Q_h.to(x).T @ x @ self.Q_w.to(x)  # Q_Hᵀ X Q_W per channel

    def _from(self, c: Tensor) -> Tensor:
        return self.Q_h.to(c) @ c @ self.Q_w.to(c).T


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
        C, H, W = _image_shape(shape, "Fourier")
        super().__init__((C, H, W))
        kh, kw = torch.meshgrid((torch.fft.fftfreq(H) * H).round().long(),
                                (torch.fft.fftfreq(W) * W).round().long(), indexing="ij")
        k2 = kh**2 + kw**2
        self._set_labels(kh=kh, kw=kw, frequency=k2.to(torch.get_default_dtype()).sqrt(),
                         rank=_rank(k2), channel=torch.arange(C)[:, None, None])

    def _to(self, x: Tensor) -> Tensor:
        F = torch.fft.fft2(x, norm="ortho")
        return F.real - F.imag

    def _from(self, c: Tensor) -> Tensor:
        return self._to(c)  # the Hartley transform is an involution


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
    """

    def __init__(self, U: Tensor, mean: Tensor, eigenvalues: Tensor, variance: Tensor,
                 whiten: bool = False, eps: float = 1e-4):
        super().__init__(tuple(mean.shape))
        self.whiten = bool(whiten)
        self.register_buffer("U", U.to(torch.float64))
        self.register_buffer("mean", mean)
        self.register_buffer("eigenvalues", eigenvalues)
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
        x64 = x.detach().to(torch.float64)
        flat = x64.mean(dim=1).flatten(1) if x.dim() == 4 else x64  # (N, P) colour-averaged
        lam, U = _eigh_descending(torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1]))
        mean = x64.mean(dim=0)  # event_shape
        centred = (x64 - mean).flatten(2) if x.dim() == 4 else x64 - mean  # (N, C, P) or (N, d)
        variance = (centred @ U).var(dim=0).reshape(mean.shape)
        dtype = x.dtype
        return cls(U, mean.to(dtype), lam.to(dtype), variance.to(dtype), whiten=whiten, eps=eps)

    def _to(self, x: Tensor) -> Tensor:
        flat = x.flatten(-2) if x.dim() == 4 else x  # (B, C, P) or (B, d)
        return (flat @ self.U.to(x)).reshape(x.shape)

    def _from(self, c: Tensor) -> Tensor:
        flat = c.flatten(-2) if c.dim() == 4 else c
        return (flat @ self.U.to(c).T).reshape(c.shape)


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
        C, H, W = _image_shape(shape, "Haar")
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


def _make_pca(shape, data: Tensor | None = None, **kwargs) -> PCA:
    if data is None:
        raise ValueError("make_basis('pca', ...) needs data=, a tensor (N, C, H, W) or (N, d)")
    if tuple(data.shape[1:]) != tuple(shape):
        raise ValueError(f"make_basis('pca', shape={tuple(shape)}) got data with per-example shape "
                         f"{tuple(data.shape[1:])}; pass matching shape and data")
    return PCA.fit(data, **kwargs)


_REGISTRY = {"pixel": Pixel, "dct": DCT, "blur": GaussianBlur, "fourier": Fourier, "haar": Haar,
             "pca": _make_pca}


def make_basis(name: str, shape: tuple[int, ...], **kwargs) -> Basis:
    """Build a basis by name: "pixel", "dct", "blur", "fourier", "haar" (levels=), "pca" (data=)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown basis {name!r}; known bases: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](shape, **kwargs)
