"""Orthogonal bases: the change of variables x̄ = Uᵀx in which a diagonal path acts.

GDM eq. (11) noises the coefficients x̄ = Uᵀx of an orthogonal U component by component; GUD
eq. (7) writes the same with M = S⁻¹U (here S = I: scaling belongs to the prior, see ``PCA``).
Every basis maps (B, *event_shape) -> (B, *event_shape) and carries per-component ``labels()``
(frequency, level, column, variance, ...) whose ``"rank"`` orders the components within a channel
(0 = lowest frequency / highest variance / first pixel); groupings and schedules index that rank.
Image bases take ``shape=(C, H, W)`` and act on each channel separately, one axis at a time.

Every basis has ``to_config()`` and ``from_config(cfg)`` (:mod:`gdmkit.config`): a fitted PCA's config
holds what was fitted, so it rebuilds without data.

- :mod:`.core` — :class:`Basis`, :class:`Pixel`, :class:`Orthogonal`;
- :mod:`.transforms` — :class:`DCT` (and :func:`dct_ii`, :func:`idct_ii`, :func:`dct_matrix`),
  :class:`GaussianBlur` (:func:`gaussian_blur_matrix`), :class:`Fourier`;
- :mod:`.fitted` — :class:`PCA`, :class:`Haar`.
"""
from __future__ import annotations

from torch import Tensor

from .core import Basis, Orthogonal, Pixel
from .fitted import PCA, Haar
from .transforms import DCT, Fourier, GaussianBlur, dct_ii, dct_matrix, gaussian_blur_matrix, idct_ii

__all__ = ["Basis", "Pixel", "Orthogonal", "DCT", "GaussianBlur", "Fourier", "PCA", "Haar", "dct_ii",
           "idct_ii", "dct_matrix", "gaussian_blur_matrix", "make_basis"]


def _make_pca(shape, data: Tensor | None = None, **kwargs) -> PCA:
    if data is None:
        raise ValueError("make_basis('pca', ...) needs data=, a tensor (N, C, H, W) or (N, d)")
    if tuple(data.shape[1:]) != tuple(shape):
        raise ValueError(f"make_basis('pca', shape={tuple(shape)}) got data with per-example shape "
                         f"{tuple(data.shape[1:])}; pass matching shape and data")
    return PCA.fit(data, **kwargs)


_FACTORIES = {"pixel": Pixel, "dct": DCT, "blur": GaussianBlur, "fourier": Fourier, "haar": Haar,
             "pca": _make_pca}


def make_basis(name: str, shape: tuple[int, ...], **kwargs) -> Basis:
    """Build a basis by name: "pixel", "dct", "blur", "fourier", "haar" (levels=), "pca" (data=)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown basis {name!r}; known bases: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](shape, **kwargs)
