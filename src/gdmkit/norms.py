"""Normalisation layers of the U-Net (:class:`gdmkit.nets.UNet`'s ``norm`` option).

- ``"group"``: GroupNorm (DDPM++), with at least :data:`MIN_CHANNELS_PER_GROUP` channels in every group
  (:func:`group_count`, as EDM's ``GroupNorm(min_channels_per_group=4)``). A ResBlock adds its time
  embedding to every channel as a constant over positions, before its second GroupNorm (DDPM++); a group
  of one channel subtracts that constant again, so with one channel per group (the narrow U-Nets' widths
  of 32 or fewer channels under the 32-group rule) the embedding never reaches the output. Its mean and
  variance pool every position of a feature map, so for a pixel grouping the pure noise of a group not yet
  generated moves every other position through them: the network cannot represent GDM Prop. 3.3's exact
  independence (the optimal denoiser ignores the groups not yet generated; Prop. 3.3's proof, GDM §3.3).
- ``"channel"``: :class:`ChannelNorm`, each position normalised over its channels; nothing is pooled
  across positions, so only the convolutions carry one position's input to another, a path that
  training can close.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["NORMS", "MIN_CHANNELS_PER_GROUP", "ChannelNorm", "group_count", "make_norm"]

NORMS = ("group", "channel")
MIN_CHANNELS_PER_GROUP = 4


def group_count(channels: int) -> int:
    """GroupNorm's number of groups for ``channels``: the largest power of two <= 32 that divides it and
    leaves at least :data:`MIN_CHANNELS_PER_GROUP` channels per group (1 group below 8 channels).

    32 groups as DDPM++ for wide maps (128 channels and more); fewer for narrow ones, so that a per-channel
    constant (the time embedding) is not subtracted by its own group's mean (EDM, Karras et al. 2022).
    """
    if channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    return next((g for g in (32, 16, 8, 4, 2) if channels % g == 0 and channels // g >= MIN_CHANNELS_PER_GROUP),
                1)


class ChannelNorm(nn.Module):
    """Normalise every position of a (B, C, H, W) map over its C channels, with a per-channel affine map.

    Layer normalisation per pixel: unlike GroupNorm, its statistics never pool positions, so a
    component that is still pure noise reaches another position only through the convolutions, a path
    training can close (GDM Prop. 3.3: the optimal denoiser ignores the groups not yet generated).
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = float(eps)
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """x : (B, C, H, W) -> (B, C, H, W)."""
        mean = x.mean(1, keepdim=True)
        var = (x - mean).square().mean(1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


def make_norm(channels: int, kind: str = "group") -> nn.Module:
    """``"group"``: GroupNorm with :func:`group_count` groups (up to 32, DDPM++; at least 4 channels per
    group, EDM); ``"channel"``: :class:`ChannelNorm`."""
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; choose 'group' (GroupNorm, DDPM++) or 'channel' (per-position "
                         "normalisation, which keeps GDM's pure-noise groups out of the other positions' statistics)")
    if kind == "channel":
        return ChannelNorm(channels)
    return nn.GroupNorm(group_count(channels), channels, eps=1e-6)
