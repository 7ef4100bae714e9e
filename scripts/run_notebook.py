"""Run one notebook of the companion with a profile's parameters, or refresh its committed outputs.

    python scripts/run_notebook.py notebooks/01_gaussian_mixture.py            # params.yaml's profile
    python scripts/run_notebook.py notebooks/01_gaussian_mixture.py --profile smoke
    python scripts/run_notebook.py notebooks/01_gaussian_mixture.py --refresh  # smoke outputs into the .ipynb

The .py (jupytext percent) is the source. A profile run converts it to a notebook, injects the
parameters of ``params.yaml[<notebook stem>][<profile>]`` plus ``profile`` and ``out_dir`` with
papermill, executes it from the repository root and writes the executed notebook to
``<out_dir>/notebook.ipynb``; the notebook itself writes figures, tables, result sets and metrics
under ``out_dir`` (default ``reports/<notebook stem>``). This is what each DVC stage runs.

``--refresh`` executes the notebook with its own defaults (the smoke profile) and stores the result in
the paired ``.ipynb``, whose outputs ``pytest --nbval notebooks/`` compares against.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # gdmkit without installation, e.g. from a bare checkout

from gdmkit import results  # noqa: E402


def _fail(msg: str) -> None:
    print(f"run_notebook: {msg}", file=sys.stderr)
    raise SystemExit(1)


def _read(source: Path):
    import jupytext

    nb = jupytext.read(source)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                          "language": "python"})
    return nb


def _parameter_names(nb) -> set[str]:
    """Names assigned in the cell tagged ``parameters``."""
    import ast

    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        _fail(f"the notebook needs exactly one cell tagged 'parameters', found {len(cells)}")
    tree = ast.parse(cells[0].source)
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def _check_device(params: dict, profile: str) -> None:
    if str(params.get("device", "cpu")).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail(f"profile {profile!r} trains on {params['device']!r} but no CUDA GPU is visible here; run it "
                  "on a GPU machine, or pick the laptop profile (set `profile: laptop` in params.yaml or pass "
                  "--profile laptop)")


def _check_dataset(params: dict, profile: str) -> None:
    """Load a paper dataset named by the ``dataset`` parameter up front, so a missing one stops the run
    before any training, with the data module's message on where to put the files."""
    name = params.get("dataset")
    if name is None or name in ("digits", "shapes", "grf") or str(name).startswith("mixture:"):
        return
    from gdmkit import data

    try:
        data.make_dataset(name, size=params.get("image_size"), root=ROOT / "data", split="train", n=1)
    except data.DatasetNotFoundError as err:
        _fail(f"profile {profile!r} needs the dataset {name!r}: {err} Or pick the laptop profile, which "
              "needs no download (`profile: laptop` in params.yaml, or --profile laptop).")


def run_profile(source: Path, profile: str | None, out_dir: str | None) -> Path:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    stem = source.stem
    try:
        profile, params = results.profile_params(results.load_params(ROOT / "params.yaml"), stem, profile)
    except ValueError as err:
        _fail(str(err))
    nb = _read(source)
    unknown = set(params) - _parameter_names(nb)
    if unknown:
        _fail(f"params.yaml sets {sorted(unknown)} for {stem}/{profile}, but the notebook's parameters cell does "
              "not define them; add them there (with their smoke value) or remove them from params.yaml")
    _check_device(params, profile)
    _check_dataset(params, profile)
    out = out_dir or f"reports/{stem}"
    params.update(profile=profile, out_dir=out)
    target = ROOT / out / "notebook.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"run_notebook: {source.name}, profile {profile!r} -> {out}/", flush=True)
    try:
        papermill.execute_notebook(nb, str(target), parameters=params, kernel_name="python3", cwd=str(ROOT),
                                   progress_bar=False, log_output=False)
    except PapermillExecutionError as err:
        _fail(f"{source.name} stopped in cell {err.exec_count} with {err.ename}: {err.evalue}\n"
              f"(the executed notebook, with the traceback, is {target.relative_to(ROOT)})")
    return target


def refresh(source: Path) -> Path:
    """Execute with the notebook's defaults (cwd = notebooks/, as nbval does) into the paired .ipynb."""
    import jupytext
    from nbclient import NotebookClient

    nb = _read(source)
    _parameter_names(nb)
    NotebookClient(nb, kernel_name="python3", timeout=1800,
                   resources={"metadata": {"path": str(source.parent)}}).execute()
    for cell in nb.cells:  # keep the committed file free of run-specific metadata
        cell.metadata.pop("execution", None)
    target = source.with_suffix(".ipynb")
    jupytext.write(nb, target, fmt="ipynb")
    print(f"run_notebook: wrote the smoke-run outputs to {target.relative_to(ROOT)}")
    return target


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", help="notebooks/NN_name.py (the jupytext source)")
    ap.add_argument("--profile", help=f"one of {', '.join(results.PROFILES)} (default: params.yaml's `profile`)")
    ap.add_argument("--out", help="output folder relative to the repository root (default reports/<stem>)")
    ap.add_argument("--refresh", action="store_true", help="execute the smoke defaults into the paired .ipynb")
    args = ap.parse_args(argv)
    source = Path(args.notebook)
    source = source if source.is_absolute() else (Path.cwd() / source)
    if source.suffix == ".ipynb":
        source = source.with_suffix(".py")
    if not source.is_file():
        _fail(f"{args.notebook} does not exist; pass the jupytext source, e.g. notebooks/01_gaussian_mixture.py")
    if args.refresh:
        refresh(source.resolve())
    else:
        run_profile(source.resolve(), args.profile, args.out)


if __name__ == "__main__":
    main()
