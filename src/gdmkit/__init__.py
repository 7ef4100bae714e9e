"""gdmkit: groupwise (GDM) and component-wise (GUD) diffusion as one diagonal Gaussian path.

Modules (imports point down this list only):

- :mod:`gdmkit.tensors`, :mod:`gdmkit.config`, :mod:`gdmkit.files` — shared idioms (time broadcasting,
  draws on the generator's device, image shapes), plain configs (``to_config`` / ``from_config``,
  fingerprints) and the one atomic file writer
- :mod:`gdmkit.bases` — orthogonal bases U with labels (pixel, DCT, Gaussian blur, Fourier, PCA, Haar)
- :mod:`gdmkit.groupings` — partitions of components into ordered groups
- :mod:`gdmkit.schedules` — GDM A(t) (eq. 10) and GUD γ(t) (eq. 18–22) with exact derivatives
- :mod:`gdmkit.paths` — the path χ_t = α χ + σ z̄, losses (GDM eq. 7–8, GUD eq. 11), conversions
- :mod:`gdmkit.oracles` — exact posterior means for Gaussian mixtures and Gaussian data
- :mod:`gdmkit.nets` — MLP and U-Net conditioned on the noising state
- :mod:`gdmkit.checkpoint` — self-describing, checksummed safetensors checkpoints; ``load_trained``
- :mod:`gdmkit.train` — one training loop (EMA, checkpoints, exact resume, DDP)
- :mod:`gdmkit.sampling` — Euler, Heun, Euler–Maruyama, encoding, NFE counting
- :mod:`gdmkit.ode` — adaptive embedded Runge–Kutta pairs (Tsit5 of GUD App. B; Dormand–Prince RK45)
- :mod:`gdmkit.likelihood` — bits/dim through the probability-flow ODE
- :mod:`gdmkit.data`, :mod:`gdmkit.features`, :mod:`gdmkit.metrics` — datasets; feature extractors
  (classifier, Inception, VGG-19); sample-quality and representation metrics
- :mod:`gdmkit.plotting` — every figure the notebooks show
- :mod:`gdmkit.companion` — the notebooks' harness (params, claims, reports, model cache); nothing
  above imports it, so the library works without notebooks
"""
from __future__ import annotations

__version__ = "0.1.0"
