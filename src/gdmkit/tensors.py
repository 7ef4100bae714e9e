"""The small tensor idioms every module shares: one of each.

- :func:`bcast` — per-example times (B,) viewed against per-component coefficients (B, *event_shape);
- :func:`randn`, :func:`rand`, :func:`randint`, :func:`randperm` — draws on the generator's own device (a CPU generator
  also serves CUDA data), then moved to where the data lives, so the same seed gives the same numbers
  wherever the computation runs;
- :func:`image_shape` — validation of a per-example image shape (C, H, W).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["bcast", "times_like", "randn", "rand", "randint", "randperm", "image_shape"]


def bcast(t: Tensor | float, ndim: int) -> Tensor:
    """Times t, shape (B,) or scalar, viewed as (B, 1, ..., 1) against ``ndim`` event dimensions.

    Integer times become float32; a float tensor keeps its dtype (float64 sees exact interval ends).
    """
    t = torch.as_tensor(t)
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1:
        raise ValueError(f"times must be a scalar or shape (B,), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t.reshape(t.shape[0], *([1] * ndim))


def times_like(t: float | Tensor, x: Tensor) -> Tensor:
    """A time per example of ``x``: shape (B,), on x's device and in x's dtype."""
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


def _draw_device(generator: torch.Generator | None, device) -> torch.device | str | None:
    return generator.device if generator is not None else device


def randn(shape: Sequence[int], generator: torch.Generator | None = None, device=None,
          dtype: torch.dtype | None = None) -> Tensor:
    """N(0, 1) draws of ``shape`` made on the generator's device, returned on ``device``."""
    z = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=_draw_device(generator, device))
    return z.to(device) if device is not None else z


def rand(shape: Sequence[int], generator: torch.Generator | None = None, device=None,
         dtype: torch.dtype | None = None) -> Tensor:
    """U(0, 1) draws of ``shape`` made on the generator's device, returned on ``device``."""
    u = torch.rand(tuple(shape), generator=generator, dtype=dtype, device=_draw_device(generator, device))
    return u.to(device) if device is not None else u


def randint(low: int, high: int, shape: Sequence[int], generator: torch.Generator | None = None,
            device=None) -> Tensor:
    """Integers in [low, high) of ``shape`` drawn on the generator's device, returned on ``device``."""
    i = torch.randint(low, high, tuple(shape), generator=generator, device=_draw_device(generator, device))
    return i.to(device) if device is not None else i


def randperm(n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """A random permutation of 0..n-1 drawn on the generator's device, returned on ``device``."""
    p = torch.randperm(int(n), generator=generator, device=_draw_device(generator, device))
    return p.to(device) if device is not None else p


def image_shape(shape: Sequence[int], what: str) -> tuple[int, int, int]:
    """``shape`` as (C, H, W) of positive ints, or ValueError naming ``what`` and the expected form."""
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{what} expects shape=(C, H, W), got {shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{what} expects shape=(C, H, W) with positive sizes, got {shape}; "
                         "pass the per-example shape of an image batch (B, C, H, W)")
    return shape
