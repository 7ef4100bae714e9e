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
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .bases import Basis
from .schedules import Marginal, Schedule

__all__ = [
    "Prediction", "DiagonalPath", "from_u", "from_eps", "from_x0", "score", "uniform_times", "discrete_times",
    "variance_matching_scale", "TARGETS",
]

TARGETS = ("u", "eps", "x0")


class Prediction(NamedTuple):
    """What a denoiser says about χ_t, all in χ coordinates, shape (B, *event_shape).

    x_hat = E[χ | χ_t], z_hat = the implied noise, v = probability-flow velocity dχ_t/dt.
    ``x_hat`` is NaN where α = 0 for the ε-parameterisation (it is not identifiable there).
    """

    x_hat: Tensor
    z_hat: Tensor
    v: Tensor


def from_u(chi_t: Tensor, u: Tensor, c: Marginal) -> Prediction:
    """From u = χ̂ − ẑ (GDM eq. 8): χ̂ = (χ_t + σ u)/(α + σ), ẑ = χ̂ − u, v = α′χ̂ + σ′ẑ (= A′u, eq. 9)."""
    x_hat = (chi_t + c.sigma * u) / (c.alpha + c.sigma)
    z_hat = x_hat - u
    return Prediction(x_hat, z_hat, c.d_alpha * x_hat + c.d_sigma * z_hat)


def from_eps(chi_t: Tensor, z_hat: Tensor, c: Marginal) -> Prediction:
    """From ẑ: v = (α′/α)(χ_t − σ ẑ) + σ′ ẑ, finite as α → 0 on VP paths (GUD eq. 25)."""
    signal = chi_t - c.sigma * z_hat
    x_hat = torch.where(c.alpha > 0, signal / c.alpha.clamp_min(1e-30), torch.full_like(signal, float("nan")))
    return Prediction(x_hat, z_hat, c.d_log_alpha * signal + c.d_sigma * z_hat)


def from_x0(chi_t: Tensor, x_hat: Tensor, c: Marginal) -> Prediction:
    """From χ̂: ẑ = (χ_t − α χ̂)/σ (0 where σ = 0, i.e. the component is still clean), v = α′χ̂ + σ′ẑ."""
    z_hat = torch.where(c.sigma > 0, (chi_t - c.alpha * x_hat) / c.sigma.clamp_min(1e-30),
                        torch.zeros_like(chi_t))
    return Prediction(x_hat, z_hat, c.d_alpha * x_hat + c.d_sigma * z_hat)


_CONVERT = {"u": from_u, "eps": from_eps, "x0": from_x0}


def score(pred: Prediction, c: Marginal) -> Tensor:
    """∇_χ log p_t(χ_t) = −ẑ/σ (GUD eq. 9, 11)."""
    return -pred.z_hat / c.sigma


def _gen_device(generator: torch.Generator | None, device):
    """Draw on the generator's device (CPU generators also serve CUDA data), then move."""
    return generator.device if generator is not None else device


def uniform_times(batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """t ~ U(0, 1) per example, shape (B,)."""
    return torch.rand(batch, generator=generator, device=_gen_device(generator, device)).to(device)


def discrete_times(n: int) -> Callable[..., Tensor]:
    """t = l/n with l ~ U{1..n} (GDM App. C.1: with N_j = 1 training uses only the grid times)."""
    def sample(batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        l = torch.randint(1, n + 1, (batch,), generator=generator, device=_gen_device(generator, device))
        return (l.float() / n).to(device)
    return sample


@torch.no_grad()
def variance_matching_scale(basis: Basis, data: Tensor, eps: float = 1e-6) -> Tensor:
    """S = per-component std of Uᵀx over ``data`` (N, *event_shape): GUD's variance-matching prior (§4.4)."""
    c = basis.to_coeffs(data)
    return c.var(0, unbiased=True).clamp_min(eps).sqrt()


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
            raise ValueError(f"schedule event shape {tuple(self.schedule.event_shape)} differs from the basis' "
                             f"{tuple(self.basis.event_shape)}: build both for the data's shape")
        if self.scale is not None:
            if tuple(self.scale.shape) != tuple(self.basis.event_shape):
                raise ValueError(f"scale must have the event shape {tuple(self.basis.event_shape)}, "
                                 f"got {tuple(self.scale.shape)}")
            if not bool((self.scale > 0).all()):
                raise ValueError("scale (prior std) must be positive everywhere; clamp small variances")

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.basis.event_shape)

    def to(self, device) -> "DiagonalPath":
        """The same path with its basis, schedule and scale on ``device`` (they also follow the data's
        device per call, but moving them once avoids a copy per call)."""
        return replace(self, basis=self.basis.to(device), schedule=self.schedule.to(device),
                       scale=None if self.scale is None else self.scale.to(device))

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
        t = torch.as_tensor(t, device=chi_t.device, dtype=chi_t.dtype)
        if t.ndim == 0:
            t = t.expand(chi_t.shape[0])
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
                time_sampler: Callable[..., Tensor] = uniform_times):
        """A training objective ``loss_fn(net, x, generator) -> (B,)`` for :func:`gdmkit.train.train`.

        ``schedule_sampler(generator)`` draws this batch's schedule (random orders, softness a, b ...;
        GDM App. D, GUD App. B); ``time_sampler(B, generator, device)`` draws t.
        """
        def fn(net, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
            path = self if schedule_sampler is None else self.with_schedule(
                schedule_sampler(generator).to(x.device))
            t = time_sampler(x.shape[0], generator=generator, device=x.device)
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype,
                            device=_gen_device(generator, x.device)).to(x.device)
            return path.loss(net, x, t, z)
        return fn

    def prior_sample(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """χ_1 ~ N(0, I) in χ coordinates, shape (n, *event_shape)."""
        return torch.randn((n, *self.event_shape), generator=generator,
                           device=_gen_device(generator, device)).to(device)
