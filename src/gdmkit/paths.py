"""The diagonal Gaussian path in an orthogonal basis, shared by GDM and GUD.

In coordinates χ = S⁻¹ Uᵀ x (basis U, prior scale S; S = 1 is the white prior, S² = the data
variance per component is GUD's variance-matching prior, §4.1, §4.4):

    χ_t = α(t) ⊙ χ + σ(t) ⊙ z̄,   z̄ ~ N(0, I)                    (GDM eq. 11; GUD eq. 14)

Any such path has the probability-flow velocity v = α′ ⊙ χ̂ + σ′ ⊙ ẑ with χ̂ = E[χ | χ_t] and
ẑ = (χ_t − α ⊙ χ̂)/σ (GDM eq. 9, 13, 17 and GUD eq. 25 are special cases) and score −ẑ/σ.

The network works in pixel space (GDM App. A.1, GUD App. B): it sees x_t = U S χ_t, the noising state
(A(t) or γ) and a scalar summary, and predicts one of three targets, mapped to χ coordinates by Uᵀ:

- ``"u"``: u = χ − z̄, GDM eq. 8 / 16 (in pixel space u = x − z);
- ``"eps"``: z̄, GUD eq. 11 with λ_i = σ_i² (the loss is then ‖z̄ − ε̂‖²);
- ``"x0"``: the clean image x, mapped by S⁻¹Uᵀ.

Training: :meth:`DiagonalPath.loss_fn` returns a :class:`Loss` (path, optional per-batch schedule
sampler, time sampler :class:`UniformTimes` / :class:`DiscreteTimes`). Path, loss and time samplers
follow the config protocol of :mod:`gdmkit.config` (``to_config`` / ``from_config``).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from . import config
from .bases import Basis
from .schedules import Marginal, Schedule
from .tensors import rand, randint, randn, times_like

__all__ = [
    "Prediction", "DiagonalPath", "Loss", "from_u", "from_eps", "from_x0", "score", "UniformTimes",
    "DiscreteTimes", "uniform_times", "discrete_times", "variance_matching_scale", "TARGETS",
]

TARGETS = ("u", "eps", "x0")


class Prediction(NamedTuple):
    """What a denoiser says about χ_t, all in χ coordinates, shape (B, *event_shape).

    x_hat = E[χ | χ_t], z_hat = the implied noise, v = probability-flow velocity dχ_t/dt.
    ``x_hat`` is NaN where α = 0 for the ε-parameterisation (it is not identifiable there).
    ``sigma`` = σ(t) and ``g2`` = g(t)² (the forward SDE's squared diffusion, :class:`Marginal`) at the
    evaluated times, broadcastable to χ_t: what the reverse SDE needs besides ẑ (GUD eq. 9). The
    converters below fill them; a hand-made Prediction without them serves the ODE solvers only.
    """

    x_hat: Tensor
    z_hat: Tensor
    v: Tensor
    sigma: Tensor | None = None
    g2: Tensor | None = None


def from_u(chi_t: Tensor, u: Tensor, c: Marginal) -> Prediction:
    """From u = χ̂ − ẑ (GDM eq. 8): χ̂ = (χ_t + σ u)/(α + σ), ẑ = χ̂ − u, v = α′χ̂ + σ′ẑ (= A′u, eq. 9)."""
    x_hat = (chi_t + c.sigma * u) / (c.alpha + c.sigma)
    z_hat = x_hat - u
    return Prediction(x_hat, z_hat, c.d_alpha * x_hat + c.d_sigma * z_hat, c.sigma, c.g2)


def from_eps(chi_t: Tensor, z_hat: Tensor, c: Marginal) -> Prediction:
    """From ẑ: v = (α′/α)(χ_t − σ ẑ) + σ′ ẑ, finite as α → 0 on VP paths (GUD eq. 25)."""
    signal = chi_t - c.sigma * z_hat
    x_hat = torch.where(c.alpha > 0, signal / c.alpha.clamp_min(1e-30), torch.full_like(signal, float("nan")))
    return Prediction(x_hat, z_hat, c.d_log_alpha * signal + c.d_sigma * z_hat, c.sigma, c.g2)


def from_x0(chi_t: Tensor, x_hat: Tensor, c: Marginal) -> Prediction:
    """From χ̂: ẑ = (χ_t − α χ̂)/σ (0 where σ = 0, i.e. the component is still clean), v = α′χ̂ + σ′ẑ."""
    z_hat = torch.where(c.sigma > 0, (chi_t - c.alpha * x_hat) / c.sigma.clamp_min(1e-30),
                        torch.zeros_like(chi_t))
    return Prediction(x_hat, z_hat, c.d_alpha * x_hat + c.d_sigma * z_hat, c.sigma, c.g2)


_CONVERT = {"u": from_u, "eps": from_eps, "x0": from_x0}


def score(pred: Prediction, c: Marginal | None = None) -> Tensor:
    """∇_χ log p_t(χ_t) = −ẑ/σ (GUD eq. 9, 11); σ from ``c``, else from the prediction itself."""
    sigma = pred.sigma if c is None else c.sigma
    if sigma is None:
        raise ValueError("this Prediction carries no sigma: pass the Marginal c, or build the prediction "
                         "with paths.from_u / from_eps / from_x0")
    return -pred.z_hat / sigma


# ----------------------------------------------------------------------------------------------
# Time samplers: t per example for the training loss
# ----------------------------------------------------------------------------------------------

@config.register
@dataclass(frozen=True)
class UniformTimes:
    """t ~ U(0, 1) per example (GDM eq. 7, GUD eq. 11).

    ``sampler(B, generator=None, device=None) -> Tensor, shape (B,)``, drawn on the generator's device.
    """

    def __call__(self, batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        return rand((batch,), generator, device=device)

    def to_config(self) -> dict:
        return {"type": "UniformTimes"}

    @classmethod
    def from_config(cls, cfg: Mapping) -> "UniformTimes":
        _check_type(cfg, cls)
        return cls()


@config.register
@dataclass(frozen=True)
class DiscreteTimes:
    """t = l/n with l ~ U{1..n} per example (GDM App. C.1: with N_j = 1 training uses only grid times).

    Parameters
    ----------
    n : int
        Number of grid times (d for the AR equivalence of App. C.1).
    """

    n: int

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"DiscreteTimes needs an integer n >= 1 (the number of grid times), "
                             f"got {self.n!r}")

    def __call__(self, batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        l = randint(1, self.n + 1, (batch,), generator)     # drawn (and divided) on the generator's device
        return (l.float() / self.n).to(device)

    def to_config(self) -> dict:
        return {"type": "DiscreteTimes", "n": self.n}

    @classmethod
    def from_config(cls, cfg: Mapping) -> "DiscreteTimes":
        _check_type(cfg, cls)
        return cls(int(cfg["n"]))


uniform_times = UniformTimes()   # the object itself samples: uniform_times(B, generator, device)


def discrete_times(n: int) -> DiscreteTimes:
    """:class:`DiscreteTimes` ``(n)`` (the name the notebooks use)."""
    return DiscreteTimes(n)


def _check_type(cfg: Mapping, cls: type) -> None:
    if not isinstance(cfg, Mapping) or cfg.get("type") != cls.__name__:
        raise ValueError(f"{cls.__name__}.from_config expects a config with type {cls.__name__!r}, "
                         f"got {cfg!r:.200}; use gdmkit.config.from_config to dispatch on the type")


def _config_of(obj, what: str) -> dict:
    """``obj.to_config()``, or a ValueError saying that ``what`` cannot be described."""
    if not callable(getattr(obj, "to_config", None)):
        raise ValueError(f"the {what} {obj!r:.120} has no to_config(), so it cannot be described or rebuilt: "
                         f"use a configurable gdmkit object (e.g. paths.UniformTimes(), "
                         f"schedules.schedule_sampler(...))")
    return obj.to_config()


def _moved_copy(module: torch.nn.Module, device) -> torch.nn.Module:
    """A deep copy of ``module`` with its tensors on ``device``, the original untouched.

    Buffers are moved straight into the copy (no second copy of a large basis matrix); a buffer that
    is already on ``device`` is shared, which is safe because ``Module.to`` replaces buffers rather
    than writing into them. Parameters are always copied (``Module.to`` writes into them).
    """
    memo: dict[int, object] = {}
    for b in module.buffers():
        memo[id(b)] = b.to(device)
    for p in module.parameters():
        memo[id(p)] = torch.nn.Parameter(p.detach().to(device, copy=True), p.requires_grad)
    return copy.deepcopy(module, memo)


@torch.no_grad()
def variance_matching_scale(basis: Basis, data: Tensor, eps: float = 1e-6) -> Tensor:
    """S = per-component std of Uᵀx over ``data`` (N, *event_shape): GUD's variance-matching prior (§4.4)."""
    c = basis.to_coeffs(data)
    return c.var(0, unbiased=True).clamp_min(eps).sqrt()


@config.register
@dataclass(frozen=True)
class DiagonalPath:
    """A diagonal Gaussian path: basis, schedule, prior scale and the network's target.

    Parameters
    ----------
    basis : Basis
    schedule : Schedule
    scale : Tensor, shape event_shape, optional
        Prior std S per coefficient (None = white prior). Must be positive.
    target : {"u", "eps", "x0"}
        What the network predicts (see module docstring). GDM uses "u", GUD "eps".
    weighting : {"target", "velocity"}
        "target": unweighted MSE on the target (GDM eq. 8, GUD eq. 11 with λ = σ²);
        "velocity": MSE on the velocity, GDM eq. 7 (A′-weighted).
    """

    basis: Basis
    schedule: Schedule
    scale: Tensor | None = None
    target: str = "u"
    weighting: str = "target"

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose one of {TARGETS}")
        if self.weighting not in ("target", "velocity"):
            raise ValueError(f"weighting must be 'target' or 'velocity', got {self.weighting!r}")
        if tuple(self.schedule.event_shape) != tuple(self.basis.event_shape):
            raise ValueError(f"schedule event shape {tuple(self.schedule.event_shape)} differs from the "
                             f"basis' {tuple(self.basis.event_shape)}: build both for the data's shape")
        if self.scale is not None:
            if tuple(self.scale.shape) != tuple(self.basis.event_shape):
                raise ValueError(f"scale must have the event shape {tuple(self.basis.event_shape)}, "
                                 f"got {tuple(self.scale.shape)}")
            if self.scale.device.type != "meta" and not bool((self.scale > 0).all()):  # meta: no values
                raise ValueError("scale (prior std) must be positive everywhere; clamp small variances")

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.basis.event_shape)

    def to(self, device) -> "DiagonalPath":
        """A copy of the path with its basis, schedule and scale on ``device``; ``self`` is untouched.

        Basis and schedule also follow the data's device per call; moving them once avoids a copy per
        call. (``nn.Module.to`` would move the modules in place, under every path that shares them.)
        """
        return replace(self, basis=_moved_copy(self.basis, device),
                       schedule=_moved_copy(self.schedule, device),
                       scale=None if self.scale is None else self.scale.to(device))

    def to_config(self) -> dict:
        """{"type": "DiagonalPath", "basis": cfg, "schedule": cfg, "scale": Tensor | None, "target",
        "weighting"} (the config protocol of :mod:`gdmkit.config`)."""
        return {"type": "DiagonalPath", "basis": _config_of(self.basis, "basis"),
                "schedule": _config_of(self.schedule, "schedule"),
                "scale": None if self.scale is None else self.scale.detach().clone(),
                "target": self.target, "weighting": self.weighting}

    @classmethod
    def from_config(cls, cfg: Mapping) -> "DiagonalPath":
        """Rebuild the path that :meth:`to_config` described (basis and schedule through their configs)."""
        _check_type(cfg, cls)
        scale = cfg.get("scale")
        return cls(config.from_config(cfg["basis"]), config.from_config(cfg["schedule"]),
                   scale=None if scale is None else torch.as_tensor(scale),
                   target=cfg.get("target", "u"), weighting=cfg.get("weighting", "target"))

    def with_schedule(self, schedule: Schedule) -> "DiagonalPath":
        """The same path with another schedule (e.g. one drawn for this batch)."""
        return replace(self, schedule=schedule)

    def _s(self, like: Tensor) -> Tensor | None:
        return None if self.scale is None else self.scale.to(like)

    def to_chi(self, x: Tensor) -> Tensor:
        """χ = S⁻¹ Uᵀ x; x (B, *event_shape) in data space."""
        c = self.basis.to_coeffs(x)
        s = self._s(c)
        return c if s is None else c / s

    def to_x(self, chi: Tensor) -> Tensor:
        """x = U S χ."""
        s = self._s(chi)
        return self.basis.from_coeffs(chi if s is None else chi * s)

    def log_det_to_x(self) -> float:
        """log |det(U S)| = Σ log S_i (0 for the white prior): log p_x = log p_χ − this."""
        return 0.0 if self.scale is None else float(self.scale.double().log().sum())

    def noise(self, chi: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """χ_t = α ⊙ χ + σ ⊙ z̄ (GDM eq. 11, GUD eq. 14); all (B, *event_shape), t (B,)."""
        c = self.schedule.marginal(t)
        return c.alpha * chi + c.sigma * z

    def net_output_to_coeffs(self, out: Tensor) -> Tensor:
        """Map a pixel-space network output to χ coordinates (Uᵀ, or S⁻¹Uᵀ for "x0")."""
        p = self.basis.to_coeffs(out)
        s = self._s(p)
        return p / s if (self.target == "x0" and s is not None) else p

    def predict(self, net, chi_t: Tensor, t: Tensor, side: str = "left") -> Prediction:
        """One network evaluation turned into (χ̂, ẑ, v) in χ coordinates."""
        t = times_like(t, chi_t)
        sched = self.schedule
        out = net(self.to_x(chi_t), sched.state(t), sched.summary(t))
        return _CONVERT[self.target](chi_t, self.net_output_to_coeffs(out), sched.marginal(t, side))

    def denoiser(self, net) -> Callable[..., Prediction]:
        """The callable ``model(chi_t, t, side="left") -> Prediction`` that samplers take."""
        def model(chi_t: Tensor, t: Tensor, side: str = "left") -> Prediction:
            return self.predict(net, chi_t, t, side)
        return model

    def loss(self, net, x: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """Per-example loss, shape (B,), mean over components.

        target "u": ‖(χ − z̄) − û‖² (GDM eq. 8, 12, 16); "eps": ‖z̄ − ε̂‖² (GUD eq. 11, λ_i = σ_i²);
        "x0": ‖χ − χ̂‖². With ``weighting="velocity"``: ‖v − v̂‖², v = α′χ + σ′z̄ (GDM eq. 7).
        x is in data space, z̄ in χ coordinates (white noise), t (B,).
        """
        chi = self.to_chi(x)
        c = self.schedule.marginal(t)
        chi_t = c.alpha * chi + c.sigma * z
        out = net(self.to_x(chi_t), self.schedule.state(t), self.schedule.summary(t))
        p = self.net_output_to_coeffs(out)
        if self.weighting == "velocity":
            v = c.d_alpha * chi + c.d_sigma * z
            err = _CONVERT[self.target](chi_t, p, c).v - v
        else:
            truth = {"u": chi - z, "eps": z, "x0": chi}[self.target]
            err = p - truth
        return err.square().flatten(1).mean(1)

    def loss_fn(self, schedule_sampler: Callable[[torch.Generator], Schedule] | None = None,
                time_sampler: Callable[..., Tensor] = UniformTimes()) -> "Loss":
        """The training objective ``loss(net, x, generator) -> (B,)`` for :func:`gdmkit.train.train`.

        ``schedule_sampler(generator)`` draws this batch's schedule (random orders, softness a, b ...;
        GDM App. D, GUD App. B; e.g. :func:`gdmkit.schedules.schedule_sampler`);
        ``time_sampler(B, generator, device)`` draws t (:class:`UniformTimes`, :class:`DiscreteTimes`).
        """
        return Loss(self, schedule_sampler, time_sampler)

    def prior_sample(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """χ_1 ~ N(0, I) in χ coordinates, shape (n, *event_shape)."""
        return randn((n, *self.event_shape), generator, device=device)


@config.register
class Loss:
    """Per-example training loss of a path, ``loss(net, x, generator) -> (B,)`` (:meth:`DiagonalPath.loss`).

    Each call draws, in this order and all from ``generator``: the batch's schedule (if
    ``schedule_sampler`` is given), the times t (B,) and the white noise z̄ (B, *event_shape).

    Parameters
    ----------
    path : DiagonalPath
    schedule_sampler : callable, optional
        ``schedule_sampler(generator) -> Schedule``, one schedule per batch (GDM App. D, GUD App. B);
        None keeps ``path.schedule``.
    time_sampler : callable
        ``time_sampler(B, generator=, device=) -> (B,)``; default :class:`UniformTimes`.
    """

    def __init__(self, path: DiagonalPath,
                 schedule_sampler: Callable[[torch.Generator], Schedule] | None = None,
                 time_sampler: Callable[..., Tensor] | None = None):
        if not isinstance(path, DiagonalPath):
            raise ValueError(f"Loss needs a paths.DiagonalPath, got {type(path).__name__}")
        for name, f in (("schedule_sampler", schedule_sampler), ("time_sampler", time_sampler)):
            if f is not None and not callable(f):
                raise ValueError(f"{name} must be callable, got {f!r:.100}")
        self.path, self.schedule_sampler = path, schedule_sampler
        self.time_sampler = UniformTimes() if time_sampler is None else time_sampler

    def __call__(self, net, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        path = self.path
        if self.schedule_sampler is not None:
            path = path.with_schedule(self.schedule_sampler(generator).to(x.device))
        t = self.time_sampler(x.shape[0], generator=generator, device=x.device)
        z = randn(x.shape, generator, device=x.device, dtype=x.dtype)
        return path.loss(net, x, t, z)

    def __repr__(self) -> str:
        return (f"Loss(target={self.path.target!r}, weighting={self.path.weighting!r}, "
                f"schedule_sampler={self.schedule_sampler!r:.80}, time_sampler={self.time_sampler!r:.80})")

    def to_config(self) -> dict:
        """{"type": "Loss", "path": cfg, "schedule_sampler": cfg | None, "time_sampler": cfg}."""
        ss = self.schedule_sampler
        return {"type": "Loss", "path": self.path.to_config(),
                "schedule_sampler": None if ss is None else _config_of(ss, "schedule_sampler"),
                "time_sampler": _config_of(self.time_sampler, "time_sampler")}

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Loss":
        _check_type(cfg, cls)
        ss = cfg.get("schedule_sampler")
        return cls(config.from_config(cfg["path"]), None if ss is None else config.from_config(ss),
                   config.from_config(cfg["time_sampler"]))
