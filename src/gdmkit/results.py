"""What a notebook needs around the library: claims tables, report folders and a model cache.

- :class:`Claims` — every paper claim a notebook checks, with its evidence and verdict. *Asserted*
  claims (exact identities, structural facts) raise :class:`ClaimFailed` when they fail, so a failed
  claim fails the run; *reported* claims (sample quality and other results that depend on the
  training budget) record a plain "does not hold at this profile" instead of failing.
- :class:`Report` — writes figures (PNG), tables (CSV and Markdown), xarray result sets (netCDF) and
  metrics (JSON) under one output folder, the layout the DVC stages declare.
- :func:`cached_train` — :func:`gdmkit.train.train` behind a content-addressed cache: the key hashes
  the initial weights, the data, the training config, a description of the loss and the source of the
  modules that define the model, so redrawing a figure never retrains and any real change does.
- :func:`setup_notebook`, :func:`repo_root`, :func:`load_params` — the small plumbing shared by the
  notebooks and ``scripts/run_notebook.py``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

__all__ = [
    "PROFILES", "INCONCLUSIVE", "ClaimFailed", "Claim", "Claims", "Report", "repo_root", "load_params",
    "profile_params", "setup_notebook", "fingerprint", "model_key", "cached_train", "history_frame", "describe_path",
]

PROFILES = ("smoke", "laptop", "paper")
# modules whose source changes what a trained model is (their hash is part of every cache key)
_MODEL_MODULES = ("bases", "groupings", "schedules", "paths", "nets", "train", "data")


# ---------------------------------------------------------------------------------- claims

INCONCLUSIVE = "not separable at this profile"


class ClaimFailed(AssertionError):
    """An asserted claim does not hold."""


@dataclass(frozen=True)
class Claim:
    """One row of a claims table."""

    claim: str      # what the paper says, in one sentence
    evidence: str   # the measurement, with its numbers
    verdict: str    # "holds", "fails", or "does not hold at this profile"
    asserted: bool  # True: a failure stops the run; False: reported only


class Claims:
    """The claims a notebook checks, in order; printed and saved as the claims table.

    Examples
    --------
    >>> claims = Claims()
    >>> claims.check("A(t) is 1 before the interval", "max |A - 1| = 0", True)
    >>> claims.report("samples match the data", "ED 0.02 vs floor 0.001", False)
    >>> claims.rows[-1].verdict
    'does not hold at this profile'

    Both methods return None, so a notebook cell ending in one prints nothing (nbval compares outputs).
    """

    def __init__(self) -> None:
        self.rows: list[Claim] = []

    def check(self, claim: str, evidence: str, holds: bool) -> None:
        """Record an asserted claim; raise :class:`ClaimFailed` if it does not hold."""
        holds = bool(holds)
        self.rows.append(Claim(claim, evidence, "holds" if holds else "fails", True))
        if not holds:
            raise ClaimFailed(f"claim failed: {claim} — evidence: {evidence}")

    def report(self, claim: str, evidence: str, holds: bool, decidable: bool = True) -> None:
        """Record a claim whose outcome depends on scale (training budget, sample size); never raises.

        ``decidable=False`` (e.g. the error bars of the compared results overlap) records the verdict
        "not separable at this profile" whatever ``holds`` says.
        """
        if not decidable:
            return self.inconclusive(claim, evidence)
        self.rows.append(Claim(claim, evidence, "holds" if holds else "does not hold at this profile", False))

    def inconclusive(self, claim: str, evidence: str) -> None:
        """Record a comparison the data cannot decide at this scale (e.g. error bars overlap); never raises."""
        self.rows.append(Claim(claim, evidence, INCONCLUSIVE, False))

    def table(self):
        """The claims as a pandas DataFrame with columns claim, evidence, verdict, checked."""
        import pandas as pd

        return pd.DataFrame([{"claim": r.claim, "evidence": r.evidence, "verdict": r.verdict,
                              "checked": "asserted" if r.asserted else "reported"} for r in self.rows],
                            columns=["claim", "evidence", "verdict", "checked"])

    def markdown(self) -> str:
        return _markdown(self.table())

    def summary(self) -> str:
        """One deterministic line per asserted claim (what nbval compares), then the reported count."""
        lines = [f"[{r.verdict}] {r.claim}" for r in self.rows if r.asserted]
        n_rep = sum(not r.asserted for r in self.rows)
        lines.append(f"{len(lines)} asserted claims checked; {n_rep} reported claims in the claims table")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- paths, params

def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that holds ``params.yaml``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no params.yaml at or above {here}: run from inside the gdmkit repository "
                            "(notebooks resolve their output folders against the repository root)")


def load_params(path: str | os.PathLike | None = None) -> dict:
    """params.yaml as a dict (default: the repository's)."""
    import yaml

    path = Path(path) if path is not None else repo_root() / "params.yaml"
    with open(path) as f:
        return yaml.safe_load(f) or {}


def profile_params(params: Mapping, notebook: str, profile: str | None = None) -> tuple[str, dict]:
    """(profile, that notebook's parameters) from a params.yaml dict; the profile defaults to its ``profile``.

    Raises ``ValueError`` naming the known profiles when the profile or the notebook block is missing.
    """
    if notebook not in params:
        blocks = [k for k, v in params.items() if isinstance(v, Mapping)]
        raise ValueError(f"params.yaml has no block {notebook!r} (blocks: {', '.join(blocks)}); add one with "
                         f"a parameter set per profile ({', '.join(PROFILES)})")
    profile = profile if profile is not None else params.get("profile")
    block = params[notebook]
    if profile not in block:
        raise ValueError(f"profile {profile!r} does not exist for {notebook}: choose one of "
                         f"{', '.join(block)} (set `profile:` in params.yaml or pass --profile), or add a "
                         f"{profile!r} block under {notebook!r} in params.yaml")
    return profile, dict(block[profile] or {})


def setup_notebook(seed: int = 0, threads: int | None = None, style: bool = True) -> None:
    """Seed torch's global RNG, fix the CPU thread count (None: leave it) and set the figure style.

    Small CPU models run faster and bit-reproducibly on one thread, and printed numbers then do not
    depend on the machine's core count (nbval compares them).
    """
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be a positive integer or None, got {threads}")
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    if style:
        from . import plotting

        plotting.use_style()


# ---------------------------------------------------------------------------------- report folder

def _json_ready(v: Any) -> Any:
    if isinstance(v, Tensor):
        v = v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, Mapping):
        return {str(k): _json_ready(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_ready(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        v = v.item()
    if isinstance(v, float):
        return float(f"{v:.6g}") if math.isfinite(v) else str(v)
    return v


def _markdown(df, floatfmt: str = ".4g") -> str:
    """A DataFrame as a Markdown table, with "|" inside headers and cells escaped (|Δ| would split columns)."""
    import pandas as pd

    esc = df.rename(columns=lambda c: str(c).replace("|", "\\|"))
    for col in esc.columns:
        if not pd.api.types.is_numeric_dtype(esc[col]):
            esc[col] = esc[col].map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)
    return esc.to_markdown(index=False, floatfmt=floatfmt)


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class Report:
    """One notebook's output folder: ``figures/`` (PNG), ``tables/`` (CSV + Markdown), ``data/``
    (netCDF) and ``metrics.json``.

    Parameters
    ----------
    out_dir : path or None
        Relative paths are taken from the repository root (notebooks run with other working folders).
        None: nothing is written (the methods still return the paths they would have used).
    """

    def __init__(self, out_dir: str | os.PathLike | None):
        if out_dir is None or str(out_dir) == "":
            self.root = None
        else:
            p = Path(out_dir)
            self.root = p if p.is_absolute() else repo_root() / p
        self._metrics: dict[str, Any] = {}

    def _file(self, sub: str, name: str) -> Path | None:
        if self.root is None:
            return None
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ValueError(f"bad output name {name!r}: use a plain file stem like 'fig1a_process'")
        folder = self.root / sub
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def figure(self, fig, name: str, dpi: int = 110, show: bool = True) -> None:
        """Save ``fig`` as figures/<name>.png (no timestamp in the file), show it once and close it.

        Showing goes through ``IPython.display.display`` inside a kernel and the figure is closed
        afterwards, so it appears exactly once whatever the inline backend does at the end of the cell
        (nbval's kernel and nbclient's differ there, and nbval counts the outputs).
        """
        import matplotlib.pyplot as plt

        f = self._file("figures", name)
        if f is not None:
            fig.savefig(f.with_suffix(".png"), dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        if show and _in_kernel():
            from IPython.display import display

            display(fig)
        plt.close(fig)

    def table(self, df, name: str, floatfmt: str = ".4g") -> None:
        """Save a pandas DataFrame as tables/<name>.csv and tables/<name>.md."""
        f = self._file("tables", name)
        if f is None:
            return
        df.to_csv(f.with_suffix(".csv"), index=False, float_format="%.6g")
        f.with_suffix(".md").write_text(_markdown(df, floatfmt) + "\n")

    def dataset(self, ds, name: str) -> None:
        """Save an xarray Dataset (or DataArray) as data/<name>.nc (netCDF3 through scipy)."""
        f = self._file("data", name)
        if f is None:
            return
        if hasattr(ds, "to_dataset") and not hasattr(ds, "data_vars"):
            ds = ds.to_dataset(name=ds.name or name)
        ds.to_netcdf(f.with_suffix(".nc"), engine="scipy", format="NETCDF3_64BIT")

    def metrics(self, **values) -> dict:
        """Merge headline numbers into metrics.json (floats to 6 significant digits); return them all."""
        self._metrics.update(_json_ready(values))
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "metrics.json").write_text(json.dumps(self._metrics, indent=2, sort_keys=True) + "\n")
        return dict(self._metrics)

    def claims(self, claims: Claims, name: str = "claims") -> None:
        """Save the claims table as tables/<name>.csv and .md."""
        self.table(claims.table(), name)


# ---------------------------------------------------------------------------------- model cache

def fingerprint(*parts: Any) -> str:
    """sha256 hex digest of tensors (bytes, dtype, shape), state dicts, and JSON-able values."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"tensor{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, Mapping):
            for k in sorted(x, key=str):
                h.update(f"<{k}>".encode())
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        else:
            h.update(json.dumps(x, sort_keys=True, default=str).encode())

    for p in parts:
        feed(p)
    return h.hexdigest()


def _source_digest() -> str:
    here = Path(__file__).parent
    return fingerprint([(here / f"{m}.py").read_text() for m in _MODEL_MODULES if (here / f"{m}.py").is_file()])


def describe_path(path, **extra) -> dict:
    """A JSON-able description of a :class:`gdmkit.paths.DiagonalPath` for cache keys.

    Holds the basis, target, weighting, prior scale and a fingerprint of the schedule's coefficients
    (α, σ, α′, σ′ on both sides) on a grid of 129 times, so any change of grouping, intervals or
    softness changes it; ``extra`` adds what the path cannot tell (time sampler, schedule sampler).
    """
    s = path.schedule
    t = torch.linspace(0, 1, 129)
    coeffs = [s.marginal(t, side) for side in ("left", "right")]
    return {"basis": repr(path.basis), "schedule": type(s).__name__, "target": path.target,
            "weighting": path.weighting, "scale": None if path.scale is None else fingerprint(path.scale),
            "coefficients": fingerprint([[c.alpha, c.sigma, c.d_alpha, c.d_sigma] for c in coeffs]),
            **_json_ready(extra)}


def model_key(net: nn.Module, data: Tensor, cfg, description: Mapping) -> dict:
    """Everything that determines a trained model, as a JSON-able dict (hashes for tensors)."""
    return {
        "description": _json_ready(dict(description)),
        "net": {"class": type(net).__name__, "repr": repr(net)},
        "initial_weights": fingerprint(net.state_dict()),
        "data": fingerprint(data),
        "train_config": cfg.to_dict(),
        "source": _source_digest(),
    }


def cached_train(loss_fn: Callable, net: nn.Module, data: Tensor, cfg, *, description: Mapping,
                 cache_dir: str | os.PathLike | None = "data/cache/models", device=None):
    """:func:`gdmkit.train.train` with a content-addressed cache of the finished run.

    The run lives in ``cache_dir/<key hash>/`` (a gdmkit checkpoint plus ``key.json``); when the
    checkpoint there has completed ``cfg.steps`` the weights are loaded instead of trained (train's
    resume), and an interrupted run resumes. ``description`` must name everything about the loss that
    the key cannot see (path, grouping, intervals, target, weighting, time and schedule samplers).
    ``cache_dir=None`` trains without caching; a relative cache_dir is taken from the repository root.

    Returns
    -------
    TrainResult
        ``.ema`` is the EMA network (use it for sampling), ``.resumed_from == cfg.steps`` when the
        result came from the cache.
    """
    from .train import train

    if cache_dir is None:
        return train(loss_fn, net, data, cfg, None, device=device, progress=False)
    key = model_key(net, data, cfg, description)
    digest = fingerprint(key)[:20]
    root = Path(cache_dir)
    root = root if root.is_absolute() else repo_root() / root
    run_dir = root / digest
    run_dir.mkdir(parents=True, exist_ok=True)
    key_file = run_dir / "key.json"
    if not key_file.is_file():
        key_file.write_text(json.dumps(key, indent=1, sort_keys=True) + "\n")
    result = train(loss_fn, net, data, cfg, run_dir, device=device, progress=False)
    result.ema.eval()
    return result


def history_frame(history: Iterable[tuple[int, float]], **labels):
    """A training history [(step, loss)] as a DataFrame with extra constant label columns."""
    import pandas as pd

    df = pd.DataFrame(list(history), columns=["step", "loss"])
    for k, v in labels.items():
        df[k] = v
    return df
