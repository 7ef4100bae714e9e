"""Per-batch draws from a continuous family of schedules (GUD App. B: one network over a softness range).

GUD trains one network for a whole range of softness values ("a drawn per batch", App. B; the wavelet
experiment draws a and b in [0.3, 0.7], §5.3; the ordering scan draws r and a, Fig. 5). The network is
conditioned on the noising state γ(t) of every component, so it tells the family members apart and
serves each of them after training. :class:`FamilySampler` is that draw: a schedule config with some
constructor arguments replaced, per call, by uniform draws from given ranges. It is the continuous
counterpart of :class:`gdmkit.schedules.ScheduleSampler` (discrete families of GDM groupings).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from .. import config, tensors
from .core import Schedule, _check_type

__all__ = ["FamilySampler"]


@config.register
class FamilySampler:
    """``sampler(generator) -> Schedule``: the template schedule with each ranged argument drawn uniformly.

    Parameters
    ----------
    template : dict
        A schedule's ``to_config()`` (e.g. ``LinearGamma(...).to_config()``); its arguments not named in
        ``ranges`` are kept as they are.
    ranges : mapping of str to (lo, hi)
        Constructor arguments of the template's class to draw, each uniformly on [lo, hi] (lo == hi
        fixes it). Every call draws them in sorted name order, one float64 uniform each, from the
        generator — so a seed fixes the sequence of schedules. A name may also be the weight of a
        blend (below) instead of a constructor argument.
    blends : mapping of str to (str, Tensor, Tensor), optional
        ``{argument: (weight, A, B)}``: the tensor argument is ``(1 − w) A + w B`` with ``w`` the drawn
        value named ``weight`` — e.g. GUD's Fourier ordering l = (1 − r)(−log Σ) + r (|k| + δ)/κ (Fig. 5),
        ``{"order": ("r", -log_var, (freq + delta) / kappa)}`` with ``"r": (0, 1)`` in ``ranges``.

    Examples
    --------
    >>> lin = LinearGamma(log_var, order, a=1.0, gamma_denoise=-3.0, power=0.5)
    >>> sampler = FamilySampler(lin.to_config(), {"a": (0.4, 1.6)})    # GUD Fig. 3: a drawn per batch
    >>> loss = path.loss_fn(schedule_sampler=sampler)
    """

    def __init__(self, template: Mapping, ranges: Mapping[str, tuple[float, float]],
                 blends: Mapping[str, tuple] | None = None):
        if not isinstance(template, Mapping) or "type" not in template:
            raise ValueError("template must be a schedule's to_config() dict (with a 'type' entry), got "
                             f"{type(template).__name__}; pass e.g. LinearGamma(...).to_config()")
        if not ranges:
            raise ValueError("ranges is empty: name at least one constructor argument to draw, e.g. "
                             "{'a': (0.4, 1.6)}; a fixed schedule needs no sampler")
        blends = dict(blends or {})
        weights = set()
        for arg, spec in blends.items():
            if arg == "type" or arg not in template:
                raise ValueError(f"blend target {arg!r} is not an argument of the template "
                                 f"{template['type']}")
            try:
                w, A, B = spec
                A, B = torch.as_tensor(A, dtype=torch.float64), torch.as_tensor(B, dtype=torch.float64)
            except (TypeError, ValueError):
                raise ValueError(f"blend of {arg!r} must be (weight name, A, B) with tensors A, B") from None
            if A.shape != B.shape:
                raise ValueError(f"blend of {arg!r}: A {tuple(A.shape)} and B {tuple(B.shape)} differ in "
                                 "shape")
            if w not in ranges:
                raise ValueError(f"blend of {arg!r} uses the weight {w!r}: give its range in ranges, "
                                 f"e.g. {{{w!r}: (0.0, 1.0)}}")
            weights.add(w)
            blends[arg] = (str(w), A, B)
        clean = {}
        for name, rng in ranges.items():
            if name in weights:
                if name in template:
                    raise ValueError(f"{name!r} is both a template argument and a blend weight: "
                                     "rename the weight")
            elif name == "type" or name not in template:
                raise ValueError(f"{name!r} is not an argument of the template {template['type']} (its "
                                 f"arguments: {', '.join(k for k in template if k != 'type')})")
            try:
                lo, hi = (float(v) for v in rng)
            except (TypeError, ValueError):
                raise ValueError(f"range of {name!r} must be a pair (lo, hi) of numbers, "
                                 f"got {rng!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ValueError(f"range of {name!r} must be finite with lo <= hi, got ({lo}, {hi})")
            clean[name] = (lo, hi)
        self.template, self.ranges, self.blends = dict(template), dict(sorted(clean.items())), blends
        # build both ends once: a range the class refuses (e.g. b = 1 for ColumnGamma) fails here
        for corner in (0, 1):
            sched = self.member(**{k: v[corner] for k, v in self.ranges.items()})
            if not isinstance(sched, Schedule):
                raise ValueError(f"the template describes a {type(sched).__name__}, not a schedule")

    def draw(self, generator: torch.Generator | None = None) -> dict[str, float]:
        """One draw of the ranged arguments, ``{name: value}`` (sorted names, one uniform each)."""
        u = tensors.rand((len(self.ranges),), generator, dtype=torch.float64).cpu().tolist()
        return {k: lo + (hi - lo) * ui for (k, (lo, hi)), ui in zip(self.ranges.items(), u)}

    def member(self, **values: float) -> Schedule:
        """The family member with the given values of the ranged arguments (e.g. for evaluation)."""
        unknown = set(values) - set(self.ranges)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not drawn by this sampler "
                             f"(it draws {list(self.ranges)})")
        values = {k: float(v) for k, v in values.items()}
        args = {k: v for k, v in values.items() if k in self.template}
        for arg, (w, A, B) in self.blends.items():
            if w in values:
                args[arg] = (1 - values[w]) * A + values[w] * B
        return config.from_config({**self.template, **args})

    def __call__(self, generator: torch.Generator | None = None) -> Schedule:
        return self.member(**self.draw(generator))

    def to_config(self) -> dict:
        return {"type": "FamilySampler", "template": self.template,
                "ranges": {k: [lo, hi] for k, (lo, hi) in self.ranges.items()},
                "blends": {k: [w, A, B] for k, (w, A, B) in self.blends.items()}}

    @classmethod
    def from_config(cls, cfg) -> "FamilySampler":
        args = _check_type(cls, cfg)
        return cls(args["template"], {k: tuple(v) for k, v in args["ranges"].items()},
                   {k: tuple(v) for k, v in args.get("blends", {}).items()})

    def __repr__(self) -> str:
        r = ", ".join(f"{k} ∈ [{lo:g}, {hi:g}]" for k, (lo, hi) in self.ranges.items())
        return f"FamilySampler({self.template['type']}, {r})"
