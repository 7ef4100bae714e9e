"""Real textures that ship inside scikit-image's wheel (never a download): brick, grass, gravel.

``skimage.data.brick()``, ``grass()`` and ``gravel()`` are 512 × 512 grayscale photographs (CC0) bundled
with the package. :func:`texture` loads one, averages ``scale`` × ``scale`` pixel blocks (a plain box
filter, deterministic) and maps the uint8 range to [-1, 1]. :func:`split_columns` keeps the left part of
the image for training and the right part for held-out evaluation, so held-out crops never overlap
training crops; :func:`random_crops` cuts square windows from either part.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TEXTURES", "texture", "split_columns", "random_crops"]

TEXTURES = ("brick", "grass", "gravel")


def texture(name: str, scale: int = 2) -> Tensor:
    """The bundled texture ``name`` as a (1, H, W) float32 tensor in [-1, 1], H = W = 512 // scale.

    Each output pixel is the mean of a scale × scale block of the uint8 photograph rounded to the nearest
    integer (so the result stays 8-bit data, for bits/dim with :func:`gdmkit.data.dequantize`), mapped by
    v ↦ v / 127.5 − 1.
    """
    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; scikit-image bundles {TEXTURES}")
    if not (isinstance(scale, int) and scale >= 1):
        raise ValueError(f"scale must be a positive integer (box-filter factor), got {scale!r}")
    import skimage.data  # a dependency; the images are files inside its wheel

    img = torch.as_tensor(getattr(skimage.data, name)(), dtype=torch.float64)
    if img.ndim != 2:
        raise ValueError(f"skimage.data.{name}() is not a grayscale image (shape {tuple(img.shape)})")
    H, W = (s // scale * scale for s in img.shape)
    img = img[:H, :W].reshape(H // scale, scale, W // scale, scale).mean((1, 3)).round()
    return (img / 127.5 - 1.0).float()[None]


def split_columns(image: Tensor, held_out: float = 0.25) -> tuple[Tensor, Tensor]:
    """(train, test): the left (1 − held_out) and the right held_out fraction of the columns of (C, H, W)."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must lie in (0, 1), got {held_out}")
    W = image.shape[-1]
    cut = int(round(W * (1 - held_out)))
    if not 0 < cut < W:
        raise ValueError(f"an image {W} columns wide cannot be split at held_out = {held_out}")
    return image[..., :cut], image[..., cut:]


def random_crops(image: Tensor, n: int, size: int, generator: torch.Generator | None = None) -> Tensor:
    """n random size × size crops of (C, H, W), shape (n, C, size, size); positions from ``generator``
    (CPU), top-left corners uniform over all positions that fit."""
    C, H, W = image.shape
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if size > H or size > W:
        raise ValueError(f"a {size}×{size} crop does not fit an image of {H}×{W}")
    ys = torch.randint(0, H - size + 1, (n,), generator=generator)
    xs = torch.randint(0, W - size + 1, (n,), generator=generator)
    rows = ys[:, None] + torch.arange(size)                                  # (n, size)
    cols = xs[:, None] + torch.arange(size)
    return image[:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3).contiguous()
