"""One notebook's output folder: figures (PNG), tables (CSV + Markdown), result sets (netCDF), metrics.

Every file goes through :mod:`gdmkit.files`' atomic writers, so an interrupted run leaves the previous
file or the new one, never half of one (DVC would otherwise commit a truncated PNG or CSV).
"""
from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import files
from .claims import Claims, markdown
from .params import dry_run, repo_root

__all__ = ["Report", "MAX_HEADLINE"]

MAX_HEADLINE = 6  # headline numbers per section (dvc metrics show)


def _json_ready(v: Any, key: str) -> Any:
    """``v`` as JSON values (tensors and numpy scalars unwrapped, floats to 6 significant digits).

    Raises ValueError naming ``key`` (dotted for nested entries) when a number is NaN or infinite.
    """
    torch = sys.modules.get("torch")  # not imported here: a value can only be a tensor once torch is loaded
    if torch is not None and isinstance(v, torch.Tensor):
        v = v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, Mapping):
        return {str(k): _json_ready(x, f"{key}.{k}") for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_ready(x, f"{key}[{i}]") for i, x in enumerate(v)]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        v = v.item()
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"metric {key} is {v}: metrics.json holds finite numbers only; find where "
                             "the measurement became NaN or infinite (a diverged run, an empty set) and "
                             "fix it, or leave the metric out")
        return float(f"{v:.6g}")
    return v


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class Report:
    """One notebook's output folder: ``figures/`` (PNG), ``tables/`` (CSV + Markdown), ``data/``
    (netCDF), ``metrics.json`` (every number) and ``headline.json`` (the few that dvc metrics shows).

    Parameters
    ----------
    out_dir : path or None
        Relative paths are taken from the repository root (notebooks run with other working folders).
        None: nothing is written (the methods still check their inputs).
    """

    def __init__(self, out_dir: str | os.PathLike | None):
        if out_dir is None or str(out_dir) == "":
            self.root = None
        else:
            p = Path(out_dir)
            self.root = p if p.is_absolute() else repo_root() / p
        self._metrics: dict[str, Any] = {}

    def _file(self, sub: str, name: str) -> Path | None:
        if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ValueError(f"bad output name {name!r}: use a plain file stem like 'fig1a_process'")
        return None if self.root is None else self.root / sub / name

    def figure(self, fig, name: str, dpi: int = 110, show: bool = True) -> None:
        """Save ``fig`` as figures/<name>.png (no timestamp in the file), show it once and close it.

        Showing goes through ``IPython.display.display`` inside a kernel and the figure is closed
        afterwards, so it appears exactly once whatever the inline backend does at the end of the cell
        (nbval's kernel and nbclient's differ there, and nbval counts the outputs).
        """
        import matplotlib.pyplot as plt

        f = self._file("figures", name)
        if f is not None:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
            files.write_bytes(f.with_suffix(".png"), buf.getvalue())
        if show and _in_kernel():
            from IPython.display import display

            display(fig)
        plt.close(fig)

    def table(self, df, name: str, floatfmt: str = ".4g") -> None:
        """Save a pandas DataFrame as tables/<name>.csv and tables/<name>.md.

        Under a dry run (:func:`~gdmkit.companion.params.dry_run`) the table gets a first column
        ``dry run`` saying so: its numbers come from stand-in data and weights.
        """
        f = self._file("tables", name)
        if f is None:
            return
        if dry_run():
            df = df.copy()
            df.insert(0, "dry run", dry_run())
        files.write_text(f.with_suffix(".csv"), df.to_csv(index=False, float_format="%.6g"))
        files.write_text(f.with_suffix(".md"), markdown(df, floatfmt) + "\n")

    def dataset(self, ds, name: str) -> None:
        """Save an xarray Dataset (or DataArray) as data/<name>.nc (netCDF3 through scipy)."""
        f = self._file("data", name)
        if f is None:
            return
        if hasattr(ds, "to_dataset") and not hasattr(ds, "data_vars"):
            ds = ds.to_dataset(name=ds.name or name)
        names = [str(n) for n in (*ds.variables, *ds.dims, *ds.attrs)]
        bad = [n for n in names if not _latin1(n)]
        if bad:
            raise ValueError(f"result set {name!r}: netCDF3 names must be Latin-1, got {bad}; rename them "
                             "with plain characters (e.g. 'gamma' for 'γ', '-' for '−') — labels with any "
                             "characters can go into attribute values or a coordinate's values instead")
        files.atomic_write(f.with_suffix(".nc"),
                           lambda tmp: ds.to_netcdf(tmp, engine="scipy", format="NETCDF3_64BIT"))

    def metrics(self, **values) -> dict:
        """Merge headline numbers into metrics.json (floats to 6 significant digits); return them all.

        Raises ValueError naming the key when a value is NaN or infinite (nothing is merged then).
        """
        new = {k: _json_ready(v, k) for k, v in values.items()}
        if dry_run():
            new["dry_run"] = dry_run()
        self._metrics.update(new)
        if self.root is not None:
            files.write_text(self.root / "metrics.json",
                             json.dumps(self._metrics, indent=2, sort_keys=True) + "\n")
        return dict(self._metrics)

    def headline(self, **values) -> dict:
        """Write the section's few headline numbers to ``headline.json`` (what ``dvc metrics`` shows).

        Flat and short so that ``dvc metrics show`` / ``dvc metrics diff --all`` stay readable in a
        terminal: at most :data:`MAX_HEADLINE` keys of at most 32 characters, each a finite number (or
        a short string); the full set of numbers goes to :meth:`metrics`. Floats keep 4 significant
        digits. Raises ValueError naming the key otherwise.
        """
        if len(values) > MAX_HEADLINE:
            raise ValueError(f"{len(values)} headline numbers, at most {MAX_HEADLINE}: keep the section's key "
                             "results here and put the rest in report.metrics(...)")
        out = {}
        for k, v in values.items():
            if len(k) > 32:
                raise ValueError(f"headline key {k!r} is longer than 32 characters; shorten it")
            v = _json_ready(v, k)
            if isinstance(v, (dict, list)) or (isinstance(v, str) and len(v) > 32):
                raise ValueError(f"headline {k} must be one number or a short string, got {v!r:.80}")
            out[k] = float(f"{v:.4g}") if isinstance(v, float) else v
        if dry_run():
            out["dry_run"] = "stand-in data: not a result"
        if self.root is not None:
            files.write_text(self.root / "headline.json", json.dumps(out, indent=2) + "\n")
        return out

    def claims(self, claims: Claims, name: str = "claims") -> None:
        """Save the claims table as tables/<name>.csv and .md.

        Raises :class:`~gdmkit.companion.claims.ClaimFailed` (after saving the table, for the record)
        when a claim rests on NaN or missing evidence.
        """
        self.table(claims.table(), name)
        claims.raise_if_bad()
