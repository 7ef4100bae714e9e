"""Partitions of the components into ordered groups (GDM §3.1, §4.1, §4.3, App. C, App. D).

A :class:`Grouping` labels every component of the event shape with the index of its group, **in
generation order**: group 0 is generated first (it is noised last, in the latest time interval), group
k − 1 last. GDM writes the partition as {S_j}; its S_1 of §4.3 (the lowest frequencies) is our group 0.

Components are indexed like the coefficients of a basis: a tensor of the event shape, e.g. (C, H, W).
Image groupings assign all channels of a pixel (or coefficient) to the same group. A grouping's
``to_config()`` holds its label tensor (:mod:`gdmkit.config`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from . import config, tensors

__all__ = [
    "Grouping", "from_index_sets", "single", "per_element", "blocks", "bottom_to_top", "right_to_left",
    "cdm", "cdm_inv", "frequency_bands", "by_label", "permute", "random_order", "make_grouping",
]


@config.register
@dataclass(frozen=True)
class Grouping:
    """Group index of every component, 0 = generated first.

    Attributes
    ----------
    group : Tensor, shape event_shape, int64
        ``group[i]`` is the group of component i; the values are exactly 0 .. k − 1. Integer-valued
        floats are accepted and converted; other floats (0.5) are refused, never truncated.
    """

    group: Tensor

    def __post_init__(self):
        g = torch.as_tensor(self.group)
        if g.is_floating_point():
            bad = g[~torch.isfinite(g) | (g != g.round())]
            if bad.numel():
                raise ValueError(f"group labels must be integers, got {bad.numel()} non-integer labels such "
                                 f"as {bad[:5].tolist()}: number the groups 0..k-1 in generation order, or "
                                 "group a real-valued label with gdmkit.groupings.by_label(label, edges)")
        if g is not self.group or g.dtype != torch.int64:
            object.__setattr__(self, "group", g.to(torch.int64))
        neg = torch.unique(self.group[self.group < 0])
        if neg.numel():
            raise ValueError(f"group labels must be >= 0, got negative labels {neg[:10].tolist()}: label "
                             "groups 0..k-1 in generation order")
        present = torch.unique(self.group)
        k = int(present.max()) + 1 if present.numel() else 0
        if present.numel() != k or int(present.min()) != 0:
            missing = sorted(set(range(k)) - set(present.tolist()))
            raise ValueError(
                f"group labels must be 0..k-1 with every group non-empty; empty groups {missing[:10]}: "
                "relabel the groups consecutively (gdmkit.groupings.by_label does this)")

    @property
    def k(self) -> int:
        """Number of groups."""
        return int(self.group.max()) + 1

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.group.shape)

    def mask(self, j: int) -> Tensor:
        """Boolean mask of group ``j``, shape event_shape."""
        if not 0 <= j < self.k:
            raise ValueError(f"group {j} does not exist: this grouping has k = {self.k} groups "
                             f"(0..{self.k - 1})")
        return self.group == j

    def sizes(self) -> list[int]:
        return torch.bincount(self.group.flatten(), minlength=self.k).tolist()

    def to_config(self) -> dict:
        """``{"type": "Grouping", "group": <int64 labels, shape event_shape>}`` (:mod:`gdmkit.config`)."""
        return {"type": "Grouping", "group": self.group.detach().to("cpu", copy=True)}

    @classmethod
    def from_config(cls, cfg) -> "Grouping":
        """The grouping a :meth:`to_config` described."""
        if cfg.get("type") != "Grouping":
            raise ValueError(f"Grouping.from_config got a config of type {cfg.get('type')!r}; "
                             "use gdmkit.config.from_config(cfg), which picks the class")
        return cls(torch.as_tensor(cfg["group"]))

    def index_sets(self) -> list[Tensor]:
        """Flat component indices of each group, in generation order."""
        flat = self.group.flatten()
        return [torch.nonzero(flat == j).flatten() for j in range(self.k)]


def _indices(values, what: str) -> Tensor:
    """``values`` as int64, refusing floats that are not whole numbers (never truncating them)."""
    v = torch.as_tensor(values)
    if v.is_floating_point() and bool((~torch.isfinite(v) | (v != v.round())).any()):
        raise ValueError(f"{what} must be integers, got {v.flatten()[:10].tolist()}; pass whole numbers")
    return v.to(torch.int64)


def from_index_sets(event_shape: Sequence[int], sets: Sequence[Sequence[int]]) -> Grouping:
    """Grouping from explicit flat index sets S_1, ..., S_k (GDM §3.1), validated as a partition.

    Raises ``ValueError`` naming the offending indices when sets overlap, leave components out, or
    point outside the event shape.
    """
    d = int(torch.tensor(event_shape).prod())
    group = torch.full((d,), -1, dtype=torch.int64)
    for j, s in enumerate(sets):
        idx = _indices(list(s), f"group {j}'s indices")
        bad = idx[(idx < 0) | (idx >= d)]
        if bad.numel():
            raise ValueError(f"group {j} has indices outside 0..{d - 1}: {bad[:10].tolist()}; "
                             f"indices are flat positions in the event shape {tuple(event_shape)}")
        uniq, counts = torch.unique(idx, return_counts=True)
        dup_within = uniq[counts > 1]
        taken = uniq[group[uniq] >= 0]
        dups = torch.cat([dup_within, taken]).unique()
        if dups.numel():
            raise ValueError(f"groups overlap at indices {dups[:10].tolist()}: every component must "
                             "belong to exactly one group")
        group[uniq] = j
    missing = torch.nonzero(group < 0).flatten()
    if missing.numel():
        raise ValueError(f"the groups do not cover indices {missing[:10].tolist()}"
                         f"{' ...' if missing.numel() > 10 else ''} ({missing.numel()} missing): "
                         "add them to a group so that the groups partition all components")
    return Grouping(group.reshape(tuple(event_shape)))


def _spatial(event_shape, grid: Tensor) -> Grouping:
    """Broadcast an (H, W) group map over channels."""
    c, h, w = tensors.image_shape(event_shape, "this grouping")
    return by_label(grid.expand(c, h, w).clone())


def single(event_shape: Sequence[int]) -> Grouping:
    """k = 1: a standard diffusion model with a scalar schedule."""
    return Grouping(torch.zeros(tuple(event_shape), dtype=torch.int64))


def per_element(event_shape: Sequence[int], order: Sequence[int] | Tensor | None = None) -> Grouping:
    """k = d, one component per group: the autoregressive special case (GDM Prop. 3.1, App. C.1).

    ``order`` lists the flat component indices in generation order (default: 0, 1, ..., d − 1).
    """
    d = int(torch.tensor(event_shape).prod())
    order = torch.arange(d) if order is None else _indices(order, "order")
    return from_index_sets(event_shape, [[int(i)] for i in order])


def blocks(event_shape: Sequence[int], per_side: int,
           order: Sequence[int] | Tensor | None = None) -> Grouping:
    """Block-wise grouping (GDM Fig. 1b, Fig. 5): the image cut into per_side × per_side blocks.

    Blocks are numbered row-major; ``order`` gives the block numbers in generation order (default
    row-major). k = per_side². When per_side does not divide a side, block sides differ by at most one
    pixel (row r belongs to block row ⌊r·per_side/H⌋), e.g. 11 + 11 + 10 for 32 pixels in 3 blocks.
    """
    _, h, w = tensors.image_shape(event_shape, "blocks")
    if not 1 <= per_side <= min(h, w):
        raise ValueError(f"per_side must be between 1 and min(H, W) = {min(h, w)}, got {per_side}")
    rows = (torch.arange(h) * per_side) // h
    cols = (torch.arange(w) * per_side) // w
    block_id = rows[:, None] * per_side + cols[None, :]
    k = per_side * per_side
    order = torch.arange(k) if order is None else _indices(order, "order")
    if sorted(order.tolist()) != list(range(k)):
        raise ValueError(f"order must be a permutation of the {k} block numbers 0..{k - 1}, "
                         f"got {order.tolist()}")
    rank = torch.empty(k, dtype=torch.int64)
    rank[order] = torch.arange(k)
    return _spatial(event_shape, rank[block_id])


def bottom_to_top(event_shape: Sequence[int], k: int = 2) -> Grouping:
    """k horizontal strips, the bottom one generated first (GDM Table 1, 'Bottom→Top')."""
    _, h, _ = tensors.image_shape(event_shape, "bottom_to_top")
    if not 1 <= k <= h:
        raise ValueError(f"k must be between 1 and H = {h}, got {k}")
    strip = (torch.arange(h) * k) // h              # 0 = top strip
    grid = (k - 1 - strip)[:, None].expand(h, event_shape[2])
    return _spatial(event_shape, grid)


def right_to_left(event_shape: Sequence[int], k: int = 2) -> Grouping:
    """k vertical strips, the right one generated first (GDM Table 1, Fig. 11, 'Right→Left')."""
    _, h, w = tensors.image_shape(event_shape, "right_to_left")
    if not 1 <= k <= w:
        raise ValueError(f"k must be between 1 and W = {w}, got {k}")
    strip = (torch.arange(w) * k) // w              # 0 = left strip
    grid = (k - 1 - strip)[None, :].expand(h, w)
    return _spatial(event_shape, grid)


def cdm(event_shape: Sequence[int]) -> Grouping:
    """Cascaded-diffusion grouping, k = 2 (GDM Prop. 3.2, App. C.2, Fig. 13).

    Group 0 is the 2× subsampled grid (even rows and even columns, no low-pass filter), group 1 the
    remaining pixels.
    """
    _, h, w = tensors.image_shape(event_shape, "cdm")
    even = (torch.arange(h)[:, None] % 2 == 0) & (torch.arange(w)[None, :] % 2 == 0)
    return _spatial(event_shape, (~even).long())


def cdm_inv(event_shape: Sequence[int]) -> Grouping:
    """CDM grouping in the inverse order (GDM Table 1, 'CDM-inv')."""
    return permute(cdm(event_shape), [1, 0])


def by_label(label: Tensor, edges: Sequence[float] | None = None, descending: bool = False) -> Grouping:
    """Group components by a basis label.

    Without ``edges`` every distinct label value is its own group, ordered ascending (or descending).
    With ``edges`` e_1 < ... < e_{k−1}, group j holds labels in [e_j, e_{j+1}) (e_0 = −∞, e_k = +∞).
    """
    if edges is None:
        values, inverse = torch.unique(label, return_inverse=True)
        g = inverse if not descending else values.numel() - 1 - inverse
        return Grouping(g.reshape(label.shape))
    e = torch.as_tensor(list(edges), dtype=torch.float64)
    if e.numel() and not bool((e[1:] > e[:-1]).all()):
        raise ValueError(f"band edges must increase strictly, got {list(edges)}")
    g = torch.bucketize(label.to(torch.float64), e, right=True)
    if descending:
        g = e.numel() - g
    return by_label(g)  # relabel consecutively, dropping empty bands


def frequency_bands(rank: Tensor, starts: Sequence[int]) -> Grouping:
    """Frequency-band groups by the basis rank label (GDM §4.3, App. A.3).

    ``starts`` are the first indices of groups 2..k: GDM's S1 = {0..29}, S2 = {30..99},
    S3 = {100..499}, S4 = the rest is ``starts=[30, 100, 500]``. ``rank`` is a basis' ``labels()["rank"]``.
    """
    n = int(rank.max()) + 1
    s = list(starts)
    if any(b <= a for a, b in zip([0] + s, s)) or (s and s[-1] >= n):
        raise ValueError(f"band starts must increase strictly inside 1..{n - 1} (the number of components "
                         f"per channel is {n}), got {s}")
    return Grouping(torch.bucketize(rank, torch.as_tensor(s, dtype=rank.dtype), right=True))


def permute(grouping: Grouping, order: Sequence[int] | Tensor) -> Grouping:
    """Reorder the groups: ``order[m]`` is the old group generated m-th."""
    order = _indices(order, "order")
    k = grouping.k
    if sorted(order.tolist()) != list(range(k)):
        raise ValueError(f"order must be a permutation of 0..{k - 1}, got {order.tolist()}")
    new = torch.empty(k, dtype=torch.int64)
    new[order] = torch.arange(k)
    return Grouping(new[grouping.group])


def random_order(grouping: Grouping, generator: torch.Generator | None = None) -> Grouping:
    """The same groups in a random generation order (GDM Fig. 5, App. D order-agnostic training)."""
    return permute(grouping, tensors.randperm(grouping.k, generator, device="cpu"))


_FACTORIES = {
    "single": single, "per_element": per_element, "blocks": blocks, "bottom_to_top": bottom_to_top,
    "right_to_left": right_to_left, "cdm": cdm, "cdm_inv": cdm_inv,
}


def make_grouping(name: str, event_shape: Sequence[int], **kwargs) -> Grouping:
    """Build a grouping by name: one of ``single, per_element, blocks, bottom_to_top, right_to_left,
    cdm, cdm_inv`` (frequency bands need a basis: use :func:`frequency_bands`)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown grouping {name!r}; known groupings: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](event_shape, **kwargs)
