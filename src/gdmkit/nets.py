"""Networks conditioned on the per-component noising state.

Every network is called as ``net(x_t, state, summary) -> out``:

- ``x_t`` : Tensor, shape (B, *event_shape) — the noised data in pixel space;
- ``state`` : Tensor, shape (B, *event_shape) — the per-component noising state, GDM's A(t) or
  GUD's γ, concatenated to the noised data (GDM §3.1: "v_θ receives A(t) instead of t, which is
  concatenated to noised data z_t"; GUD §4.5 and App. B);
- ``summary`` : Tensor, shape (B,) — a scalar for the time embedding, e.g. t or (1/N) Σ_i γ_i
  (GUD App. B uses the mean of γ "as a proxy for the time, since it is a monotonous function of t");
- ``out`` : Tensor with ``x_t``'s shape.

The basis change happens outside the network (GDM App. A.1, GUD App. B): the network always
works in pixel space.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import conditioning, config
from .norms import make_norm

__all__ = [
    "make_net",
    "MLP",
    "UNet",
    "UNET_PRESETS",
    "count_parameters",
    "sinusoidal_embedding",
    "unet_preset",
]


def sinusoidal_embedding(
    summary: Tensor, dim: int, *, scale: float = 1000.0, max_period: float = 10_000.0
) -> Tensor:
    """Transformer-style sinusoidal embedding of a scalar per example (DDPM / NCSN++).

    Parameters
    ----------
    summary : Tensor, shape (B,)
        The scalar to embed (t in [0, 1], or the mean noising state).
    dim : int
        Embedding width; frequencies ``scale * max_period**(-k / (dim // 2))``.
    scale : float
        Multiplies ``summary`` first (1000 maps t in [0, 1] to DDPM's integer-step range).
    max_period : float
        Longest period, in units of ``scale * summary``.

    Returns
    -------
    Tensor, shape (B, dim)
        ``[cos(scale·s·f_k), sin(scale·s·f_k)]`` (zero-padded when ``dim`` is odd), float32.
    """
    half = dim // 2
    k = torch.arange(half, device=summary.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * k / max(half, 1))  # (half,)
    args = scale * summary.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # (B, 2*half)
    return F.pad(emb, (0, dim % 2))


def _summary_batch(summary: Tensor, batch: int) -> Tensor:
    """Broadcast a scalar or (B,) summary to shape (B,)."""
    return summary.reshape(-1).expand(batch)


def _from_config(cls, cfg):
    """``cls(**cfg without "type")``; ValueError for another type or unknown arguments."""
    args = {k: v for k, v in cfg.items() if k != "type"}
    if cfg.get("type") != cls.__name__:
        raise ValueError(f"{cls.__name__}.from_config got a config of type {cfg.get('type')!r}; "
                         "use gdmkit.config.from_config, which dispatches on 'type'.")
    known = set(inspect.signature(cls.__init__).parameters) - {"self"}
    if set(args) - known:
        raise ValueError(f"{cls.__name__} config has unknown entries {sorted(set(args) - known)}; "
                         f"its arguments are {sorted(known)}.")
    return cls(**args)


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``net`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


@config.register
class MLP(nn.Module):
    """MLP for low-dimensional data, conditioned on the noising state (GDM §3.1, GUD §4.5).

    Input ``concat(x_t, state, emb(summary))`` of width ``2·dim + emb_dim``, then ``depth``
    hidden layers of width ``hidden`` with SiLU, then a zero-initialised linear output layer
    (so the untrained network predicts 0).

    Parameters
    ----------
    dim : int
        Number of data components d (event_shape is flattened; it must have d elements).
    hidden : int
        Hidden width.
    depth : int
        Number of hidden layers (>= 1).
    emb_dim : int
        Width of the sinusoidal embedding of ``summary``.
    emb_scale : float
        ``scale`` of :func:`sinusoidal_embedding`: use the schedule's ``summary_scale`` (1000 for t in
        [0, 1], 1 for a ``GammaSchedule``'s (1/d) Σ_i γ_i).
    """

    def __init__(
        self, dim: int, hidden: int = 256, depth: int = 4, emb_dim: int = 64, emb_scale: float = 1000.0
    ):
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth), ("emb_dim", emb_dim)):
            if int(value) < 1:
                raise ValueError(f"MLP: {name} must be a positive integer, got {value}; pass {name} >= 1.")
        self.dim, self.emb_dim, self.emb_scale = int(dim), int(emb_dim), float(emb_scale)
        self.hidden, self.depth = int(hidden), int(depth)
        layers: list[nn.Module] = [nn.Linear(2 * self.dim + self.emb_dim, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, self.dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def to_config(self) -> dict:
        """The constructor arguments: ``config.from_config`` builds the same architecture."""
        return {"type": "MLP", "dim": self.dim, "hidden": self.hidden, "depth": self.depth,
                "emb_dim": self.emb_dim, "emb_scale": self.emb_scale}

    @classmethod
    def from_config(cls, cfg: dict) -> MLP:
        """Inverse of :meth:`to_config` (freshly initialised weights, drawn from the global RNG)."""
        return _from_config(cls, cfg)

    def forward(self, x_t: Tensor, state: Tensor, summary: Tensor) -> Tensor:
        """x_t, state : (B, *event_shape) with d elements per example; summary : (B,) -> (B, *event_shape)."""
        B = x_t.shape[0]
        if x_t[0].numel() != self.dim or state.shape != x_t.shape:
            raise ValueError(
                f"MLP(dim={self.dim}) got x_t {tuple(x_t.shape)} and state {tuple(state.shape)}; "
                f"both must have shape (B, *event_shape) with {self.dim} elements per example."
            )
        emb = sinusoidal_embedding(_summary_batch(summary, B), self.emb_dim, scale=self.emb_scale)
        h = torch.cat([x_t.reshape(B, -1), state.reshape(B, -1).to(x_t.dtype), emb.to(x_t.dtype)], 1)
        return self.out(self.body(h)).reshape(x_t.shape)  # (B, *event_shape)


# --------------------------------------------------------------------------------------- U-Net


class ResBlock(nn.Module):
    """DDPM++ residual block: GroupNorm-SiLU-conv, + linear(embedding), GroupNorm-SiLU-dropout-conv.

    The skip sum is rescaled by 1/√2 (DDPM++ ``skip_rescale``).
    """

    def __init__(self, c_in: int, c_out: int, emb_ch: int, dropout: float, norm: str = "group"):
        super().__init__()
        self.norm1, self.conv1 = make_norm(c_in, norm), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_ch, c_out)
        self.norm2, self.drop = make_norm(c_out, norm), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x : (B, c_in, H, W); emb : (B, emb_ch) (already through SiLU) -> (B, c_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]  # (B, c_out, 1, 1) broadcast
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return (self.skip(x) + h) * (1.0 / math.sqrt(2.0))


class AttnBlock(nn.Module):
    """Multi-head self-attention over the H·W positions (64 channels per head, at least one head)."""

    def __init__(self, channels: int, norm: str = "group"):
        super().__init__()
        self.heads = max(h for h in range(1, max(channels // 64, 1) + 1) if channels % h == 0)
        self.norm = make_norm(channels, norm)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """x : (B, C, H, W) -> (B, C, H, W); ``emb`` is ignored."""
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(1))  # each (B, heads, HW, C/heads)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return (x + self.proj(h)) * (1.0 / math.sqrt(2.0))


class _Block(nn.Module):
    """A ResBlock optionally followed by self-attention."""

    def __init__(self, c_in: int, c_out: int, emb_ch: int, dropout: float, attention: bool, norm: str = "group"):
        super().__init__()
        self.res = ResBlock(c_in, c_out, emb_ch, dropout, norm)
        self.attn = AttnBlock(c_out, norm) if attention else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.res(x, emb)
        return h if self.attn is None else self.attn(h)


class _Down(nn.Module):
    """Strided 3×3 convolution: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.conv(x)


class _Up(nn.Module):
    """Nearest-neighbour ×2 upsampling then a 3×3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


@config.register
class UNet(nn.Module):
    """DDPM/NCSN++-style U-Net conditioned on the noising state (GDM §3.1, App. B; GUD §4.5, App. B).

    Input ``concat(x_t, state)`` along channels; ``summary`` -> sinusoidal embedding -> 2-layer MLP
    (width ``4·base_channels``), added through a linear projection in every ResBlock. The final
    convolution is zero-initialised, so the untrained network predicts 0. Fully convolutional: any
    H, W divisible by ``2**(len(channel_mult) - 1)`` works at call time; ``image_size`` fixes where
    attention goes (``attn_resolutions`` not reached are ignored).

    Parameters
    ----------
    channels : int
        Data channels C (output channels too).
    image_size : int
        Side of the training images; must be divisible by ``2**(len(channel_mult) - 1)``.
    base_channels : int
        Width of the first level (DDPM++ CIFAR-10: 128).
    channel_mult : sequence of int
        Width multiplier per level; one downsampling between consecutive levels.
    num_res_blocks : int
        ResBlocks per level on the way down (one more on the way up, DDPM).
    attn_resolutions : sequence of int
        Feature-map sides at which self-attention follows each ResBlock (DDPM++: 16).
    dropout : float
        Dropout inside ResBlocks (DDPM++ CIFAR-10: 0.1).
    state_channels : int or None
        Channels of ``state`` (default ``channels``: one noising state per component).
    mid_attention : bool
        Self-attention in the middle block (DDPM: yes).
    emb_scale : float
        ``scale`` of :func:`sinusoidal_embedding`: use the schedule's ``summary_scale`` (1000 for t in
        [0, 1], 1 for a ``GammaSchedule``'s (1/d) Σ_i γ_i).
    state_conditioning : {"channels", "cross_attention"}
        γ as input channels (GUD App. B's NCSN++ variant), or App. A's conditioning: γ with
        ``position_labels`` (L, *event_shape) through MLP-Mixer layers (``mixer_width``, ``mixer_depth``),
        fed by cross-attention at every level down and up and in the middle (:mod:`gdmkit.conditioning`);
        the input is then x_t alone. Both keep the ``summary`` time embedding.
    norm : {"group", "channel"}
        GroupNorm in every block (DDPM++), or :class:`gdmkit.norms.ChannelNorm`, which pools no positions:
        see :mod:`gdmkit.norms` for why that matters for GDM Prop. 3.3 with pixel groupings.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        base_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        state_channels: int | None = None,
        mid_attention: bool = True,
        emb_scale: float = 1000.0,
        state_conditioning: str = "channels",
        position_labels: Tensor | None = None,
        mixer_width: int = 32,
        mixer_depth: int = 2,
        norm: str = "group",
    ):
        super().__init__()
        _check_unet_args(channels, image_size, base_channels, channel_mult, num_res_blocks, dropout)
        self.norm = norm  # checked by make_norm below
        self.state_conditioning, self.mixer_width = state_conditioning, int(mixer_width)
        self.mixer_depth = int(mixer_depth)
        self.position_labels = conditioning.check_position_labels(state_conditioning, position_labels,
                                                                  channels, image_size)
        cross = state_conditioning == "cross_attention"
        self.channels = int(channels)
        self.state_channels = int(channels if state_channels is None else state_channels)
        self.image_size, self.levels = int(image_size), len(channel_mult)
        self.base_channels, self.emb_scale = int(base_channels), float(emb_scale)
        self.channel_mult, self.num_res_blocks = [int(m) for m in channel_mult], int(num_res_blocks)
        self.attn_resolutions = [int(r) for r in attn_resolutions]
        self.dropout, self.mid_attention = float(dropout), bool(mid_attention)
        emb_ch = 4 * base_channels
        self.emb = nn.Sequential(nn.Linear(base_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.conv_in = nn.Conv2d(self.channels + (0 if cross else self.state_channels), base_channels, 3,
                                 padding=1)
        attn = set(self.attn_resolutions)
        self.down, skips, ch, res = nn.ModuleList(), [base_channels], base_channels, int(image_size)
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.down.append(_Block(ch, base_channels * mult, emb_ch, dropout, res in attn, norm))
                ch = base_channels * mult
                skips.append(ch)
            if level != self.levels - 1:
                self.down.append(_Down(ch))
                skips.append(ch)
                res //= 2
        self.mid = nn.ModuleList(
            [_Block(ch, ch, emb_ch, dropout, mid_attention, norm), _Block(ch, ch, emb_ch, dropout, False, norm)]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(_Block(ch + skips.pop(), base_channels * mult, emb_ch, dropout, res in attn, norm))
                ch = base_channels * mult
            if level != 0:
                self.up.append(_Up(ch))
                res *= 2
        self.norm_out = make_norm(ch, norm)
        self.conv_out = nn.Conv2d(ch, self.channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.cross = nn.ModuleDict() if cross else None  # built last: the default modules' init is unchanged
        if cross:  # App. A: state encoder, one cross-attention per level down, in the middle, per level up
            d = self.position_labels[0].numel()
            self.state_encoder = conditioning.StateEncoder(self.position_labels.reshape(-1, d), mixer_width,
                                                           mixer_depth)
            for key, ch, res in conditioning.cross_sites(self.image_size, base_channels, channel_mult,
                                                         num_res_blocks):
                self.cross[key] = conditioning.StateCrossAttention(ch, mixer_width, d, res * res)

    def to_config(self) -> dict:
        """All constructor arguments: ``config.from_config`` builds the same architecture."""
        return {"type": "UNet", "channels": self.channels, "image_size": self.image_size,
                "base_channels": self.base_channels, "channel_mult": list(self.channel_mult),
                "num_res_blocks": self.num_res_blocks, "attn_resolutions": list(self.attn_resolutions),
                "dropout": self.dropout, "state_channels": self.state_channels,
                "mid_attention": self.mid_attention, "emb_scale": self.emb_scale,
                "state_conditioning": self.state_conditioning, "position_labels": self.position_labels,
                "mixer_width": self.mixer_width, "mixer_depth": self.mixer_depth, "norm": self.norm}

    @classmethod
    def from_config(cls, cfg: dict) -> UNet:
        """Inverse of :meth:`to_config` (freshly initialised weights, drawn from the global RNG)."""
        return _from_config(cls, cfg)

    def forward(self, x_t: Tensor, state: Tensor, summary: Tensor) -> Tensor:
        """x_t : (B, C, H, W); state : (B, state_channels, H, W); summary : (B,) -> (B, C, H, W)."""
        self._check_inputs(x_t, state)
        s = _summary_batch(summary, x_t.shape[0])  # (B,)
        emb = sinusoidal_embedding(s, self.base_channels, scale=self.emb_scale)  # (B, base)
        emb = F.silu(self.emb(emb.to(x_t.dtype)))  # (B, 4*base)
        cross = self.cross is not None
        tokens = self.state_encoder(state) if cross else None  # (B, d, mixer_width)
        h = self.conv_in(x_t if cross else torch.cat([x_t, state.to(x_t.dtype)], dim=1))  # (B, base, H, W)
        hs = [h]
        for i, block in enumerate(self.down):
            h = block(h, emb)
            h = self.cross[f"down{i}"](h, tokens) if cross and f"down{i}" in self.cross else h
            hs.append(h)
        for i, block in enumerate(self.mid):
            h = block(h, emb)
            h = self.cross["mid"](h, tokens) if cross and i == 0 else h
        for i, block in enumerate(self.up):
            h = block(h, emb) if isinstance(block, _Up) else block(torch.cat([h, hs.pop()], dim=1), emb)
            h = self.cross[f"up{i}"](h, tokens) if cross and f"up{i}" in self.cross else h
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)

    def _check_inputs(self, x_t: Tensor, state: Tensor) -> None:
        factor = 2 ** (self.levels - 1)
        if x_t.dim() != 4 or x_t.shape[1] != self.channels:
            raise ValueError(f"UNet(channels={self.channels}) needs x_t of shape (B, {self.channels}, H, W), "
                             f"got {tuple(x_t.shape)}.")
        B, _, H, W = x_t.shape
        if tuple(state.shape) != (B, self.state_channels, H, W):
            raise ValueError(f"UNet(state_channels={self.state_channels}) needs state of shape "
                             f"({B}, {self.state_channels}, {H}, {W}), got {tuple(state.shape)}.")
        if H % factor or W % factor:
            raise ValueError(f"UNet with {self.levels} levels needs H and W divisible by {factor}, got {(H, W)}; "
                             "pad or crop the images, or use a shorter channel_mult.")


def _check_unet_args(channels, image_size, base_channels, channel_mult, num_res_blocks, dropout) -> None:
    for name, value in (("channels", channels), ("image_size", image_size), ("base_channels", base_channels)):
        if int(value) < 1:
            raise ValueError(f"UNet: {name} must be a positive integer, got {value}.")
    if len(channel_mult) == 0 or any(int(m) < 1 for m in channel_mult):
        raise ValueError(f"UNet: channel_mult must be a non-empty sequence of positive integers, "
                         f"got {channel_mult}.")
    if int(num_res_blocks) < 1 or not 0.0 <= dropout < 1.0:
        raise ValueError(f"UNet: need num_res_blocks >= 1 and 0 <= dropout < 1, "
                         f"got {num_res_blocks}, {dropout}.")
    factor = 2 ** (len(channel_mult) - 1)
    if image_size % factor:
        raise ValueError(
            f"UNet: image_size {image_size} is not divisible by 2**(len(channel_mult) - 1) = {factor} "
            f"(channel_mult={tuple(channel_mult)}); use an image_size that is a multiple of {factor} "
            "or a channel_mult with fewer levels."
        )


# -------------------------------------------------------------------------------------- presets

UNET_PRESETS: dict[str, dict] = {
    # tiny, for smoke tests and nbval: 2 levels, 1 ResBlock, no attention anywhere
    "smoke": dict(base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                  mid_attention=False),
    # CPU-sized: 3 levels, 1 ResBlock, attention at 8×8
    "laptop": dict(base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,)),
    # DDPM++-like CIFAR-10 size (GDM App. B uses DDPM++ from Karras et al. 2022)
    "paper": dict(base_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
                  dropout=0.1),
}


def unet_preset(name: str, channels: int, image_size: int, **overrides) -> UNet:
    """Build a :class:`UNet` from a named preset ("smoke", "laptop", "paper"); ``overrides`` win."""
    if name not in UNET_PRESETS:
        raise ValueError(f"unknown U-Net preset {name!r}; choose one of {sorted(UNET_PRESETS)}.")
    return UNet(channels, image_size, **{**UNET_PRESETS[name], **overrides})


def make_net(kind: str, event_shape: Sequence[int], *, hidden: int = 256, depth: int = 4, emb_dim: int = 64,
             emb_scale: float = 1000.0, **unet_overrides) -> nn.Module:
    """A network for data of ``event_shape``: ``kind="mlp"`` (any shape, flattened) or a U-Net preset
    name ("smoke", "laptop", "paper") for images (C, H, W); square images only for the U-Net.
    ``emb_scale``: the time embedding's, for either kind (the schedule's ``summary_scale``)."""
    if kind == "mlp":
        return MLP(math.prod(event_shape), hidden, depth, emb_dim, emb_scale)
    if len(event_shape) != 3 or event_shape[1] != event_shape[2]:
        raise ValueError(f"a U-Net needs square images (C, H, H), got event shape {tuple(event_shape)}; "
                         "use kind='mlp' for other shapes")
    return unet_preset(kind, event_shape[0], event_shape[1], emb_scale=emb_scale, **unet_overrides)

