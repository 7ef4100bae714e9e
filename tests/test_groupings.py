"""Tests for gdmkit.groupings: every factory is a partition, and each matches its paper definition.

Group 0 is generated first (GDM's S_1 of §4.3). A grouping of an image assigns all channels of a
pixel (or coefficient) to the same group.
"""
from __future__ import annotations

import pytest
import torch

from gdmkit import groupings as G
from gdmkit.groupings import Grouping


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_partition(g: Grouping, event_shape) -> None:
    """Each component in exactly one group, the groups exactly 0..k−1 and non-empty."""
    assert g.event_shape == tuple(event_shape)
    assert g.group.dtype == torch.int64
    k = g.k
    assert sorted(torch.unique(g.group).tolist()) == list(range(k))
    masks = torch.stack([g.mask(j) for j in range(k)])            # (k, *event_shape)
    assert torch.equal(masks.sum(0), torch.ones(event_shape, dtype=torch.long))
    assert sum(g.sizes()) == g.group.numel() and min(g.sizes()) >= 1
    flat = torch.cat(g.index_sets())
    assert torch.equal(flat.sort().values, torch.arange(g.group.numel()))


def _channels_agree(g: Grouping) -> None:
    assert bool((g.group == g.group[:1]).all()), "all channels of a pixel must share its group"


SHAPE = (2, 6, 4)

FACTORIES = {
    "single": lambda: G.single(SHAPE),
    "per_element": lambda: G.per_element(SHAPE),
    "per_element_order": lambda: G.per_element(SHAPE, order=torch.randperm(48, generator=_gen(1))),
    "blocks": lambda: G.blocks(SHAPE, 2),
    "blocks_order": lambda: G.blocks(SHAPE, 2, order=[3, 1, 0, 2]),
    "bottom_to_top": lambda: G.bottom_to_top(SHAPE, k=3),
    "right_to_left": lambda: G.right_to_left(SHAPE, k=2),
    "cdm": lambda: G.cdm(SHAPE),
    "cdm_inv": lambda: G.cdm_inv(SHAPE),
    "by_label": lambda: G.by_label(torch.tensor([[3.0, 1.0], [1.0, 7.0]])),
    "frequency_bands": lambda: G.frequency_bands(torch.arange(12).reshape(1, 3, 4), [2, 5]),
    "random_order": lambda: G.random_order(G.blocks(SHAPE, 2), generator=_gen(2)),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_factory_gives_a_partition(name):
    g = FACTORIES[name]()
    _assert_partition(g, g.event_shape)


@pytest.mark.parametrize("name", ["blocks", "blocks_order", "bottom_to_top", "right_to_left", "cdm",
                                  "cdm_inv", "single"])
def test_image_groupings_share_the_group_across_channels(name):
    _channels_agree(FACTORIES[name]())


def test_single_and_per_element():
    assert G.single(SHAPE).k == 1
    g = G.per_element((5,))
    assert torch.equal(g.group, torch.arange(5))
    order = [3, 0, 4, 1, 2]                                     # flat indices in generation order
    g = G.per_element((5,), order=order)
    assert [int(g.group[i]) for i in order] == [0, 1, 2, 3, 4]
    g = G.per_element((2, 2))                                  # flat positions, row-major
    assert torch.equal(g.group, torch.tensor([[0, 1], [2, 3]]))


def test_from_index_sets_is_the_inverse_of_index_sets():
    sets = [[5, 0], [2], [1, 3, 4]]
    g = G.from_index_sets((2, 3), sets)
    assert g.k == 3 and g.sizes() == [2, 1, 3]
    assert [s.tolist() for s in g.index_sets()] == [sorted(s) for s in sets]
    assert torch.equal(g.group, torch.tensor([[0, 2, 1], [2, 2, 0]]))


def test_from_index_sets_names_overlapping_indices():
    with pytest.raises(ValueError, match=r"groups overlap at indices \[1, 3\]"):
        G.from_index_sets((5,), [[0, 1, 3], [1, 2, 3, 4]])
    with pytest.raises(ValueError, match=r"overlap at indices \[2\]"):      # repeated inside one set
        G.from_index_sets((3,), [[0, 2, 2], [1]])


def test_from_index_sets_names_missing_indices():
    with pytest.raises(ValueError, match=r"do not cover indices \[2, 5\].*2 missing.*add them"):
        G.from_index_sets((6,), [[0, 1], [3, 4]])


def test_from_index_sets_names_out_of_range_indices():
    with pytest.raises(ValueError, match=r"group 1 has indices outside 0\.\.3: \[4, -1\]"):
        G.from_index_sets((2, 2), [[0, 1], [2, 3, 4, -1]])


def test_grouping_names_negative_labels():
    with pytest.raises(ValueError) as err:
        Grouping(torch.tensor([-1, 0, 1]))
    assert "negative" in str(err.value) or "[-1" in str(err.value), str(err.value)


def test_grouping_rejects_non_consecutive_labels_and_bad_masks():
    with pytest.raises(ValueError, match=r"empty groups \[1\].*relabel"):
        Grouping(torch.tensor([0, 2, 2]))
    g = G.single((3,))
    with pytest.raises(ValueError, match="group 1 does not exist"):
        g.mask(1)


def test_grouping_refuses_fractional_labels_instead_of_truncating():
    """[0, 0.5, 1] used to become [0, 0, 1] silently; integer-valued floats are fine."""
    with pytest.raises(ValueError, match=r"must be integers, got 1 non-integer labels such as \[0\.5\]"):
        Grouping(torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="must be integers.*by_label"):
        Grouping(torch.tensor([0.0, float("nan"), 1.0]))
    g = Grouping(torch.tensor([[0.0, 1.0], [1.0, 2.0]]))
    assert g.group.dtype == torch.int64 and g.group.tolist() == [[0, 1], [1, 2]]
    with pytest.raises(ValueError, match="order must be integers"):
        G.permute(G.cdm((1, 2, 2)), [1.5, 0.0])
    with pytest.raises(ValueError, match="order must be integers"):
        G.per_element((3,), order=[0.0, 2.0, 1.2])


def test_blocks_row_major_and_order():
    g = G.blocks((1, 4, 6), 2)                                 # blocks of 2×3, numbered row-major
    expected = torch.tensor([[0, 0, 0, 1, 1, 1],
                             [0, 0, 0, 1, 1, 1],
                             [2, 2, 2, 3, 3, 3],
                             [2, 2, 2, 3, 3, 3]])
    assert torch.equal(g.group[0], expected)
    # order lists the block numbers in generation order: block 3 first, then 1, 0, 2
    g = G.blocks((1, 4, 6), 2, order=[3, 1, 0, 2])
    first_of = {0: 2, 1: 1, 2: 3, 3: 0}                         # block -> generation rank
    assert torch.equal(g.group[0], expected.apply_(lambda b: first_of[b]))


def test_blocks_near_equal_when_the_side_does_not_divide():
    g = G.blocks((1, 32, 32), 3)                               # CIFAR-10 side, GDM Fig. 5's k = 9
    block_row = g.group[0, :, 0] // 3                          # row-major numbering: block = 3·row + col
    assert torch.bincount(block_row).tolist() == [11, 11, 10]   # row r in block row floor(3r/32)
    assert g.k == 9 and sorted(g.sizes()) == sorted([11 * 11, 11 * 11, 11 * 10, 11 * 11, 11 * 11, 11 * 10,
                                                     10 * 11, 10 * 11, 10 * 10])


def test_blocks_bad_arguments():
    with pytest.raises(ValueError, match="per_side must be between 1 and min"):
        G.blocks(SHAPE, 5)
    with pytest.raises(ValueError, match="permutation of the 4 block numbers"):
        G.blocks(SHAPE, 2, order=[0, 1, 1, 2])
    with pytest.raises(ValueError, match=r"blocks expects shape=\(C, H, W\)"):
        G.blocks((6, 4), 2)


def test_bottom_to_top_generates_the_bottom_strip_first():
    g = G.bottom_to_top((1, 6, 3), k=3)
    rows = g.group[0, :, 0].tolist()
    assert rows == [2, 2, 1, 1, 0, 0]                          # bottom rows are group 0
    assert bool((g.group == g.group[:, :, :1]).all())          # constant along each row
    assert G.bottom_to_top((1, 6, 3), k=6).group[0, :, 0].tolist() == [5, 4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="k must be between 1 and H = 6"):
        G.bottom_to_top((1, 6, 3), k=7)


def test_right_to_left_generates_the_right_strip_first():
    g = G.right_to_left((1, 3, 4), k=2)
    assert g.group[0, 0].tolist() == [1, 1, 0, 0]
    assert bool((g.group == g.group[:, :1, :]).all())          # constant along each column
    assert G.right_to_left((1, 3, 4), k=4).group[0, 1].tolist() == [3, 2, 1, 0]
    with pytest.raises(ValueError, match="k must be between 1 and W = 4"):
        G.right_to_left((1, 3, 4), k=0)


def test_cdm_puts_the_subsampled_grid_first():
    """GDM App. C.2: the 2× subsampled grid (even rows AND even columns, no low-pass) is group 0."""
    C, H, W = 2, 6, 8
    g = G.cdm((C, H, W))
    assert g.k == 2
    for r in range(H):
        for c in range(W):
            expected = 0 if (r % 2 == 0 and c % 2 == 0) else 1
            assert bool((g.group[:, r, c] == expected).all()), (r, c)
    assert g.sizes() == [C * H * W // 4, 3 * C * H * W // 4]
    # the subsampled image is exactly x[..., ::2, ::2]
    x = torch.arange(C * H * W).reshape(C, H, W)
    assert torch.equal(x[g.mask(0)].reshape(C, H // 2, W // 2), x[:, ::2, ::2])


def test_cdm_inv_reverses_the_order():
    g, gi = G.cdm((1, 4, 4)), G.cdm_inv((1, 4, 4))
    assert torch.equal(gi.group, 1 - g.group)


def test_by_label_edges_and_descending():
    label = torch.tensor([0.5, 2.0, 1.0, 3.5, 1.0])
    assert G.by_label(label).group.tolist() == [0, 2, 1, 3, 1]                 # distinct values
    assert G.by_label(label, descending=True).group.tolist() == [3, 1, 2, 0, 2]
    # group j holds labels in [e_j, e_{j+1}): left-closed bins
    assert G.by_label(label, edges=[1.0, 3.0]).group.tolist() == [0, 1, 1, 2, 1]
    assert G.by_label(label, edges=[1.0, 3.0], descending=True).group.tolist() == [2, 1, 1, 0, 1]
    # an empty band is dropped and the rest relabelled consecutively
    assert G.by_label(label, edges=[1.0, 1.2, 1.5, 3.0]).group.tolist() == [0, 2, 1, 3, 1]  # [1.2, 1.5) empty
    with pytest.raises(ValueError, match="band edges must increase strictly"):
        G.by_label(label, edges=[2.0, 1.0])


def test_frequency_bands_gdm_section_4_3():
    """GDM §4.3: S1 = {0..29}, S2 = {30..99}, S3 = {100..499}, S4 = the rest, on a rank label."""
    C, H, W = 3, 32, 32
    rank = torch.randperm(H * W, generator=_gen(5)).reshape(H, W).expand(C, H, W).contiguous()
    g = G.frequency_bands(rank, [30, 100, 500])
    assert g.k == 4
    assert g.sizes() == [C * 30, C * 70, C * 400, C * (H * W - 500)]
    for j, (lo, hi) in enumerate([(0, 30), (30, 100), (100, 500), (500, H * W)]):
        assert torch.equal(g.mask(j), (rank >= lo) & (rank < hi))


def test_frequency_bands_bad_starts():
    rank = torch.arange(16).reshape(1, 4, 4)
    for starts in ([0, 5], [5, 5], [8, 3], [5, 16]):
        with pytest.raises(ValueError, match="band starts must increase strictly inside 1..15"):
            G.frequency_bands(rank, starts)


def test_permute_and_random_order():
    g = G.blocks((1, 4, 4), 2)
    p = G.permute(g, [2, 0, 3, 1])                              # old group 2 generated first
    for m, old in enumerate([2, 0, 3, 1]):
        assert torch.equal(p.mask(m), g.mask(old))
    with pytest.raises(ValueError, match="permutation of 0..3"):
        G.permute(g, [0, 1, 2])
    a = G.random_order(g, generator=_gen(11))
    b = G.random_order(g, generator=_gen(11))
    assert torch.equal(a.group, b.group)
    # the same groups (as sets), only relabelled
    sets = lambda grouping: sorted(tuple(s.tolist()) for s in grouping.index_sets())
    assert sets(a) == sets(g)
    orders = {tuple(G.random_order(g, generator=_gen(s)).group[0, ::2, ::2].flatten().tolist())
              for s in range(8)}
    assert len(orders) > 1, "different seeds should give different orders"


def test_make_grouping_registry():
    assert torch.equal(G.make_grouping("cdm", SHAPE).group, G.cdm(SHAPE).group)
    assert torch.equal(G.make_grouping("blocks", SHAPE, per_side=2).group, G.blocks(SHAPE, 2).group)
    with pytest.raises(ValueError, match="unknown grouping 'spiral'; known groupings: .*cdm"):
        G.make_grouping("spiral", SHAPE)
