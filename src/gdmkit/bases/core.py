"""The basis interface and the two bases with no structure of their own: pixels and any orthogonal U.

:class:`Basis` is the change of variables x̄ = Uᵀx of GDM eq. (11) / GUD eq. (7) (S = I); every basis
maps (B, *event_shape) -> (B, *event_shape), carries per-component ``labels()`` and describes itself
with ``to_config()`` (:mod:`gdmkit.config`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import config, tensors

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


def _leaf(t: Tensor) -> Tensor:
    """A config's copy of a tensor: detached, on the CPU, not aliasing the basis' buffer."""
    return t.detach().to("cpu", copy=True)


def _eigh_descending(A: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending) and sign-fixed eigenvectors (columns) of symmetric A, float64."""
    lam, Q = torch.linalg.eigh(A.to(torch.float64))
    lam, Q = lam.flip(0), Q.flip(1)
    return lam, _fix_signs(Q)


class Basis(torch.nn.Module):
    """Orthogonal change of basis U (GDM eq. 11, GUD eq. 7 with S = I): coefficients x̄ = Uᵀx.

    Subclasses implement ``_to(x)``, ``_from(c)`` and ``_config_args()`` (their constructor arguments);
    constant matrices and labels are buffers so ``.to(device)`` moves them. Transforms preserve dtype
    and device of their input.
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

    def _matrix_as(self, name: str, like: Tensor, transpose: bool = False) -> Tensor:
        """Buffer ``name`` (a float64 matrix) cast to ``like``'s dtype and device, kept per dtype and device.

        Dense bases (PCA, Orthogonal) would otherwise re-cast their float64 matrix on every call. The copy
        is rebuilt when the buffer changes (moved by ``.to``, or written by ``load_state_dict``).
        """
        src = getattr(self, name)
        key = (name, transpose, like.dtype, like.device)
        stamp = (src.data_ptr(), src._version)
        cache = self.__dict__.setdefault("_cast_cache", {})
        hit = cache.get(key)
        if hit is None or hit[0] != stamp:
            m = src.detach().to(dtype=like.dtype, device=like.device)
            hit = cache[key] = (stamp, (m.T if transpose else m).contiguous())
        return hit[1]

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

    def to_config(self) -> dict:
        """``{"type": <class name>, <constructor arguments>}`` (:mod:`gdmkit.config`), tensors on the CPU."""
        return {"type": type(self).__name__, **self._config_args()}

    @classmethod
    def from_config(cls, cfg) -> "Basis":
        """The basis a :meth:`to_config` described, equal to it bit for bit."""
        args = dict(cfg)
        if args.pop("type", None) != cls.__name__:
            raise ValueError(f"{cls.__name__}.from_config got a config of type {cfg.get('type')!r}; "
                             "use gdmkit.config.from_config(cfg), which picks the class")
        return cls(**args)

    def _config_args(self) -> dict:
        raise ValueError(f"the basis {type(self).__name__} cannot describe itself: give it _config_args() "
                         "returning its constructor arguments and register it with @gdmkit.config.register")

    def _to(self, x: Tensor) -> Tensor:  # x̄ = Uᵀx on a checked input
        raise NotImplementedError

    def _from(self, c: Tensor) -> Tensor:  # x = U x̄ on a checked input
        raise NotImplementedError


@config.register
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

    def _config_args(self) -> dict:
        return {"event_shape": list(self.event_shape)}

    def _to(self, x: Tensor) -> Tensor:
        return x.clone()

    def _from(self, c: Tensor) -> Tensor:
        return c.clone()


@config.register
class Orthogonal(Basis):
    """Any orthogonal basis of vectors, event shape (d,); ``matrix[:, i]`` is the i-th basis vector.

    matrix : Tensor, shape (d, d), orthogonal (checked: max |UᵀU − I| ≤ 1e-4); stored in float64.
    """

    def __init__(self, matrix: Tensor):
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"Orthogonal needs a square (d, d) matrix, got shape "
                             f"{tuple(matrix.shape)}; pass the basis vectors as columns")
        U = matrix.detach().to(torch.float64)
        bad = int((~torch.isfinite(U)).sum())
        if bad:
            raise ValueError(f"matrix has {bad} non-finite entries (NaN or inf); an orthogonal matrix "
                             "is finite: check how it was computed")
        err = (U.T @ U - torch.eye(U.shape[0], dtype=U.dtype, device=U.device)).abs().max()
        if err > 1e-4:
            raise ValueError(f"matrix is not orthogonal: max |UᵀU − I| = {err:.3g} > 1e-4; "
                             "orthonormalise it (e.g. torch.linalg.qr) or use Orthogonal.random")
        super().__init__((U.shape[0],))
        self.register_buffer("U", U.contiguous())  # row-major, as a config/checkpoint restores it
        self._set_labels(rank=torch.arange(U.shape[0], device=U.device))

    @classmethod
    def random(cls, d: int, generator: torch.Generator | None = None) -> "Orthogonal":
        """Random orthogonal basis: QR of a (d, d) standard Gaussian, signs making diag R > 0."""
        A = tensors.randn((d, d), generator, dtype=torch.float64)  # on the generator's device
        Q, R = torch.linalg.qr(A)
        return cls(Q * torch.sign(torch.diagonal(R)))

    def _config_args(self) -> dict:
        return {"matrix": _leaf(self.U)}

    def _to(self, x: Tensor) -> Tensor:
        return x @ self._matrix_as("U", x)  # (B, d) @ (d, d): row-vector form of Uᵀx

    def _from(self, c: Tensor) -> Tensor:
        return c @ self._matrix_as("U", c, transpose=True)


