"""Noising-state conditioning by cross-attention (GUD §4.5, App. A): the layers of
``UNet(state_conditioning="cross_attention")``.

GUD App. A conditions the score network on the whole component-wise noising state γ ∈ R^d, not only on
a scalar time: "we first concatenate the noising state γ with position labels specific to the application
and the choice of basis" (−log Σ_i for PCA, |k| for Fourier, a column / wavelet-group index for §5.2–5.3);
"the concatenated inputs are then processed through MLP-Mixer layers"; "along the depth of the U-Net, a
single dense layer is used to reduce the spatial extent to that of the coarse images at that level, before
they are input into the cross-attention".

- :class:`StateEncoder`: one token per component i, ``[φ(γ_i), labels_i]`` → linear → ``depth``
  :class:`MixerBlock` s → tokens (B, d, width). φ is a fixed Fourier-feature map of γ_i.
- :class:`StateCrossAttention`: at one U-Net resolution (H_l, W_l), a dense layer over the token axis maps
  the d tokens to H_l·W_l tokens; the image features (queries) attend to them (keys, values). The output
  projection is zero-initialised, so an untrained block is the identity.

The position labels are fixed per basis (buffers, standardised per label so their scale is irrelevant);
they are constructor arguments of the network and part of its config.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .norms import group_count

__all__ = ["gamma_features", "MixerBlock", "StateEncoder", "StateCrossAttention", "position_labels",
           "check_position_labels", "cross_sites"]


def gamma_features(gamma: Tensor, n: int, *, gamma_scale: float = 10.0) -> Tensor:
    """Fixed features of each γ_i: ``[γ/γ_scale, cos(f_k γ), sin(f_k γ)]``, shape (..., n).

    Frequencies f_k = exp(linspace(log 0.05, log 3, (n − 1)//2)) cover periods from ~2 to ~125 in γ
    (the schedules of GUD App. B span γ ∈ [−10, 15]); a zero column pads to n when n − 1 is odd.

    Parameters
    ----------
    gamma : Tensor, shape (...)
    n : int, >= 1
    """
    if n < 1:
        raise ValueError(f"gamma_features needs n >= 1 features, got {n}")
    half = (n - 1) // 2
    g = gamma.float()[..., None]
    parts = [g / gamma_scale]
    if half:
        f = torch.exp(torch.linspace(math.log(0.05), math.log(3.0), half, device=gamma.device))
        parts += [torch.cos(g * f), torch.sin(g * f)]
    out = torch.cat(parts, -1)
    return F.pad(out, (0, n - out.shape[-1]))


class MixerBlock(nn.Module):
    """One MLP-Mixer layer (Tolstikhin et al. 2021) on tokens (B, N, width).

    h ← h + W₂ GELU(W₁ LN(h)ᵀ)ᵀ (token mixing, across the N components), then
    h ← h + V₂ GELU(V₁ LN(h)) (channel mixing, per token).
    """

    def __init__(self, tokens: int, width: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, token_hidden), nn.GELU(),
                                       nn.Linear(token_hidden, tokens))
        self.channel_mlp = nn.Sequential(nn.Linear(width, channel_hidden), nn.GELU(),
                                         nn.Linear(channel_hidden, width))

    def forward(self, h: Tensor) -> Tensor:
        """h : (B, N, width) -> (B, N, width)."""
        h = h + self.token_mlp(self.norm1(h).transpose(1, 2)).transpose(1, 2)
        return h + self.channel_mlp(self.norm2(h))


class StateEncoder(nn.Module):
    """Tokens of the noising state with position labels, mixed by MLP-Mixer layers (GUD App. A).

    Parameters
    ----------
    labels : Tensor, shape (L, d)
        L position labels per component (e.g. −log Σ_i; |k_i|), d = prod(event_shape). Standardised
        per label here (a constant label becomes 0).
    width : int
        Token width.
    depth : int
        Number of :class:`MixerBlock` s (>= 0).
    n_features : int
        Features φ(γ_i) per component (:func:`gamma_features`).
    """

    def __init__(self, labels: Tensor, width: int = 32, depth: int = 2, n_features: int = 16):
        super().__init__()
        if labels.dim() != 2:
            raise ValueError(f"labels must have shape (L, d), got {tuple(labels.shape)}")
        if width < 1 or depth < 0 or n_features < 1:
            raise ValueError(f"StateEncoder needs width >= 1, depth >= 0, n_features >= 1; got {width}, "
                             f"{depth}, {n_features}")
        lab = labels.double()
        std = lab.std(1, keepdim=True) if lab.shape[1] > 1 else torch.ones_like(lab[:, :1])
        lab = (lab - lab.mean(1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))
        self.register_buffer("labels", lab.T.float().contiguous(), persistent=False)  # (d, L)
        self.d, self.n_features = int(labels.shape[1]), int(n_features)
        self.embed = nn.Linear(n_features + labels.shape[0], width)
        self.mixer = nn.ModuleList([MixerBlock(self.d, width, 2 * width, 2 * width) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)

    def forward(self, state: Tensor) -> Tensor:
        """state : (B, *event_shape) with d elements -> tokens (B, d, width)."""
        B = state.shape[0]
        g = state.reshape(B, -1)
        if g.shape[1] != self.d:
            raise ValueError(f"StateEncoder built for d = {self.d} components got a state of shape "
                             f"{tuple(state.shape)}")
        feats = gamma_features(g, self.n_features)                         # (B, d, n_features)
        lab = self.labels.to(feats).expand(B, -1, -1)                      # (B, d, L)
        h = self.embed(torch.cat([feats, lab], -1))                        # (B, d, width)
        for block in self.mixer:
            h = block(h)
        return self.norm(h)


class StateCrossAttention(nn.Module):
    """Image features attend to the state tokens, reduced to the level's spatial extent (GUD App. A).

    A dense layer over the token axis maps d tokens to n_out = H_l·W_l tokens; queries are the
    GroupNorm-ed features at the H_l·W_l positions. Residual, zero-initialised output projection.

    Parameters
    ----------
    channels : int
        Feature channels at this level.
    width : int
        Width of the state tokens.
    tokens : int
        d, the number of state tokens.
    n_out : int
        H_l·W_l, the number of positions at this level.
    """

    def __init__(self, channels: int, width: int, tokens: int, n_out: int):
        super().__init__()
        self.heads = max(h for h in range(1, max(channels // 32, 1) + 1) if channels % h == 0)
        self.n_out = int(n_out)
        self.norm = nn.GroupNorm(group_count(channels), channels, eps=1e-6)
        self.reduce = nn.Linear(tokens, n_out)                  # the "single dense layer" of App. A
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(width, 2 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, tokens: Tensor) -> Tensor:
        """x : (B, C, H, W) with H·W = n_out; tokens : (B, d, width) -> (B, C, H, W)."""
        B, C, H, W = x.shape
        if H * W != self.n_out:
            raise ValueError(f"cross-attention built for {self.n_out} positions got features {H}×{W}: the "
                             "cross-attention U-Net runs at its image_size only")
        kv_tokens = self.reduce(tokens.transpose(1, 2)).transpose(1, 2)   # (B, n_out, width)
        q = self.q(self.norm(x).flatten(2).transpose(1, 2))               # (B, HW, C)
        k, v = self.kv(kv_tokens).chunk(2, -1)                             # each (B, n_out, C)
        split = lambda t: t.reshape(B, -1, self.heads, C // self.heads).transpose(1, 2)  # noqa: E731
        h = F.scaled_dot_product_attention(split(q), split(k), split(v))  # (B, heads, HW, C/heads)
        h = self.proj(h.transpose(1, 2).reshape(B, H * W, C))             # (B, HW, C)
        return x + h.transpose(1, 2).reshape(B, C, H, W)


def position_labels(basis, names) -> Tensor:
    """Stack a basis' labels (``basis.labels()[name]``) into the (L, *event_shape) tensor the
    cross-attention U-Net takes; ``"-log_variance"`` gives −log of the "variance" label (GUD App. A's PCA
    label), any other name the label itself (e.g. "frequency" = |k|, "column", "level")."""
    labels = basis.labels()
    out = []
    for name in ([names] if isinstance(names, str) else list(names)):
        key = name[len("-log_"):] if name.startswith("-log_") else name
        if key not in labels:
            raise ValueError(f"the basis has no label {key!r}; its labels: {sorted(labels)}")
        v = labels[key].double().expand(basis.event_shape)
        out.append(-v.clamp_min(1e-12).log() if name.startswith("-log_") else v)
    return torch.stack(out).float()


def check_position_labels(mode: str, labels, channels: int, image_size: int) -> Tensor | None:
    """The U-Net's position labels as a float32 (L, C, H, W) tensor for "cross_attention", None for
    "channels" (where labels must not be given)."""
    if mode not in ("channels", "cross_attention"):
        raise ValueError(f"UNet: state_conditioning must be 'channels' or 'cross_attention', got {mode!r}.")
    if mode == "channels":
        if labels is not None:
            raise ValueError("UNet: position_labels are used by state_conditioning='cross_attention' only; "
                             "pass position_labels=None or choose cross-attention.")
        return None
    event = (int(channels), int(image_size), int(image_size))
    lab = None if labels is None else torch.as_tensor(labels, dtype=torch.float32).detach().cpu()
    if lab is not None and tuple(lab.shape) == event:
        lab = lab[None]
    if lab is None or tuple(lab.shape[1:]) != event or not bool(torch.isfinite(lab).all()):
        raise ValueError(f"UNet(state_conditioning='cross_attention') needs finite position_labels of shape "
                         f"(L, *{event}), e.g. conditioning.position_labels(basis, '-log_variance').")
    return lab.clone()


def cross_sites(image_size: int, base_channels: int, channel_mult, num_res_blocks: int) -> list[tuple]:
    """Where the U-Net applies cross-attention: (key, channels, side) after the last block of every level
    on the way down ("down<i>", i its index in ``UNet.down``), after the first middle block ("mid") and
    after the last block of every level on the way up ("up<i>", its index in ``UNet.up``)."""
    levels, chs = len(channel_mult), [int(base_channels) * int(m) for m in channel_mult]
    nrb, sites = int(num_res_blocks), []
    for level in range(levels):  # UNet.down: per level nrb blocks, then a _Down (not after the last)
        sites.append((f"down{level * (nrb + 1) + nrb - 1}", chs[level], image_size >> level))
    sites.append(("mid", chs[-1], image_size >> (levels - 1)))
    for j, level in enumerate(reversed(range(levels))):  # UNet.up: per level nrb + 1 blocks, then an _Up
        sites.append((f"up{j * (nrb + 2) + nrb}", chs[level], image_size >> level))
    return sites
