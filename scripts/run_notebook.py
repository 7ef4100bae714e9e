"""Run one notebook of the companion with a profile's parameters, or refresh its committed outputs.

    python scripts/run_notebook.py notebooks/01_gaussian_mixture.py            # params.yaml's profile
    python scripts/run_notebook.py notebooks/01_gaussian_mixture.py --profile smoke
    python scripts/run_notebook.py notebooks/01_gaussian_mixture.py --refresh  # smoke outputs into the .ipynb
    python scripts/run_notebook.py notebooks/03_grouping_ordering.py --profile paper --dry-run
    python scripts/run_notebook.py notebooks/04_semantic_band.py --params 04_semantic_band_digits  # a variant

The .py (jupytext percent) is the source. A profile run converts it to a notebook, injects the
parameters of ``params.yaml[<notebook stem>][<profile>]`` plus ``profile`` and ``out_dir`` with
papermill and executes it from the repository root; the notebook writes figures, tables, result sets
and metrics under its ``out_dir`` and the runner adds the executed ``notebook.ipynb``. This is what each
DVC stage runs (default output folder ``reports/<notebook stem>``).

``--params <stem>_<variant>`` runs the same notebook with a block of its own, ``params.yaml[<stem>_<variant>]``
(another data set, say: ``04_semantic_band_digits``), into ``reports/<stem>_<variant>``; a variant is a
DVC stage of its own, and everything below keyed on the stem (history, dry-run block, output folders) is
keyed on the variant's name instead.

- **A failed run changes nothing.** The notebook writes into a scratch folder beside the outputs,
  ``<out>.new/``; only when every cell succeeded does each of its entries replace the old one (a folder
  by one atomic exchange where the OS has it, a file by an atomic rename). After a failure the
  scratch folder keeps the executed notebook with the traceback; the next run clears it.
- **Progress.** One line per code cell on stderr: n/N, elapsed time, the time left (from the previous
  run's per-cell timings, kept in ``data/cache/run_notebook/``, not in the committed outputs) and the
  section the cell belongs to; the kernel's stdout and stderr pass through, and so does what the
  notebook writes to ``sys.__stderr__`` (the kernel runs with ``GDMKIT_PROGRESS=1``: a training progress
  bar), which stays out of the executed notebook.
- **Reproducible files.** The executed notebook carries no timestamps, durations, paths, Python
  version or random cell ids, so two identical runs write identical bytes (git and dvc.lock stay clean).

``--dry-run`` runs a profile's code path (paper or gpu: data loader, networks, schedules, samplers, metrics,
report layout) on the CPU, on stand-in data and weights in the real on-disk formats (:mod:`gdmkit.standins`,
written once under ``--data-root``), with the budgets that params.yaml's ``dry_run: <stem>`` block names
replaced; a cell at the top of the executed notebook lists every replaced value, every table gets a
``dry run`` column, and the outputs go to ``data/cache/dry_run/<stem>.<profile>/``, never to reports/.

``--refresh`` executes the notebook with its own defaults (the smoke profile) and stores the result in
the paired ``.ipynb``, whose outputs ``pytest --nbval notebooks/`` compares against.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # gdmkit without installation, e.g. from a bare checkout
# nbformat imports jsonschema, whose format checker imports rfc3987_syntax when installed (jupyterlab's
# jupyter-events pulls it in): that package compiles 38 grammars at import, 3 s of every run's start, for an
# "iri" format no notebook schema uses (python-jsonschema/jsonschema#1428). Without it jsonschema simply
# skips that format.
sys.modules.setdefault("rfc3987_syntax", None)

from gdmkit import companion  # noqa: E402

ENGINE = "gdmkit-progress"  # the papermill engine registered below
HISTORY = "data/cache/run_notebook"  # per-cell timings of the last successful run (gitignored)
PROGRESS_ENV = "GDMKIT_PROGRESS"  # set in the kernel: progress bars may write to sys.__stderr__


def _fail(msg: str) -> None:
    print(f"run_notebook: {msg}", file=sys.stderr)
    raise SystemExit(1)


def _show(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside, else absolute."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _read(source: Path):
    import jupytext

    nb = jupytext.read(source)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                          "language": "python"})
    return nb


def _parameters_source(nb) -> str:
    """The source of the one cell tagged ``parameters``."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        _fail(f"the notebook needs exactly one cell tagged 'parameters', found {len(cells)}")
    return cells[0].source


def _parameter_names(nb) -> set[str]:
    """Names assigned in the cell tagged ``parameters``."""
    import ast

    tree = ast.parse(_parameters_source(nb))
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)}


def _check_device(params: dict, profile: str) -> None:
    if str(params.get("device", "cpu")).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail(f"profile {profile!r} trains on {params['device']!r} but no CUDA GPU is visible here; run "
                  "it on a GPU machine, or pick the laptop profile (set `profile: laptop` in params.yaml or "
                  "pass --profile laptop)")


def _check_dataset(params: dict, profile: str) -> None:
    """Load a paper dataset named by the ``dataset`` parameter up front, so a missing one stops the run
    before any training, with the data module's message on where to put the files."""
    name = params.get("dataset")
    if name is None or name in ("digits", "shapes", "grf") or str(name).startswith("mixture:"):
        return
    from gdmkit import data

    try:
        data.make_dataset(name, size=params.get("image_size"), root=ROOT / params.get("data_root", "data"),
                          split="train", n=1)
    except data.DatasetNotFoundError as err:
        _fail(f"profile {profile!r} needs the dataset {name!r}: {err} Or pick the laptop profile, which "
              "needs no download (`profile: laptop` in params.yaml, or --profile laptop).")


# ---------------------------------------------------------------------------------- reproducible notebook

def _cell_ids(cells) -> list[str]:
    """Deterministic cell ids: a hash of each cell's type and source (``-n`` for repeats); papermill's
    injected cell is ``injected-parameters`` whatever the values, so timings match across profiles."""
    ids, seen = [], {}
    for cell in cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            ids.append("injected-parameters")
            continue
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        seen[digest] = seen.get(digest, 0) + 1
        ids.append(digest if seen[digest] == 1 else f"{digest}-{seen[digest] - 1}")
    return ids


def _normalize(nb, parameters: dict | None = None) -> None:
    """Strip what differs between two identical runs: timestamps, durations, paths, Python version,
    random cell ids; with ``parameters``, rewrite the injected cell for them (the final ``out_dir``
    instead of the scratch folder the notebook ran in)."""
    if parameters is not None:
        from papermill.translators import translate_parameters

        for cell in nb.cells:
            if "injected-parameters" in cell.metadata.get("tags", []):
                cell.source = translate_parameters("python3", "python", parameters, "Parameters")
        nb.metadata["papermill"] = {"parameters": parameters}
    for cell, cell_id in zip(nb.cells, _cell_ids(nb.cells)):
        cell.id = cell_id
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    nb.metadata.get("language_info", {}).pop("version", None)


# ---------------------------------------------------------------------------------- progress

def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _labels(cells) -> list[str]:
    """What each cell does, in a few words: its ``papermill_description=``, a leading comment line, the
    parameters tags, or else the first line of the markdown heading above it."""
    labels, section = [], ""
    for cell in cells:
        lines = [ln.strip() for ln in cell.source.splitlines() if ln.strip()
                 and not ln.lstrip("# ").startswith(("NBVAL_", "%%", "noqa"))]  # markers, not descriptions
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "markdown":
            heads = [ln for ln in lines if ln.startswith("#")] or lines
            section = heads[0].lstrip("#").strip() if heads else section
            label = section
        elif "injected-parameters" in tags:
            label = "parameters from params.yaml"
        elif "parameters" in tags:
            label = "parameters (defaults)"
        elif "papermill_description=" in cell.source:
            label = cell.source.split("papermill_description=")[1].split()[0]
        elif lines and lines[0].startswith("#") and not lines[0].startswith("#!"):
            label = lines[0].lstrip("#").strip()
        else:
            label = section
        labels.append(label if len(label) <= 80 else label[:77] + "...")
    return labels


class Progress:
    """One line per code cell on ``stream``: ``[n/N] elapsed, time left · label``.

    Parameters
    ----------
    history : dict
        Seconds per cell id from the previous successful run; the time left is their sum over the cells
        still to run (cells without a timing count as the mean of those with one). Empty: elapsed time
        and n/N only.
    """

    def __init__(self, history: dict[str, float], stream=None):
        self.history, self.stream, self.seconds = dict(history), stream, {}

    def begin(self, cells) -> None:
        self.ids, self.labels = _cell_ids(cells), _labels(cells)
        self.code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
        self.t0, self.started = time.monotonic(), {}
        if not self.history:
            print("run_notebook: no cell timings from an earlier run yet; the time left shows from the next "
                  "run on", file=self.stream or sys.stderr, flush=True)

    def _left(self, k: int) -> str:
        todo = [self.ids[i] for i in self.code[k:]]
        known = [self.history[c] for c in todo if c in self.history]
        if not known:
            return ""
        mean = sum(known) / len(known)
        return f", ~{_clock(sum(self.history.get(c, mean) for c in todo))} left"

    def cell_start(self, index: int) -> None:
        self.started[index] = time.monotonic()
        if index not in self.code:
            return
        k, n = self.code.index(index), len(self.code)
        line = (f"run_notebook: [{k + 1:>{len(str(n))}}/{n}] {_clock(time.monotonic() - self.t0)} elapsed"
                f"{self._left(k)} · {self.labels[index]}")
        print(line, file=self.stream or sys.stderr, flush=True)

    def cell_end(self, index: int) -> None:
        if index in self.started:
            self.seconds[self.ids[index]] = round(time.monotonic() - self.started[index], 3)


def _register_engine() -> None:
    """A papermill nbclient engine that reports each cell to a :class:`Progress` (``progress=``)."""
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, progress=None, **kwargs):
            if progress is not None:
                start, complete = nb_man.cell_start, nb_man.cell_complete
                progress.begin(nb_man.nb.cells)

                def cell_start(cell, cell_index=None, **kw):
                    progress.cell_start(cell_index)
                    return start(cell, cell_index, **kw)

                def cell_complete(cell, cell_index=None, **kw):
                    progress.cell_end(cell_index)
                    return complete(cell, cell_index, **kw)

                nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE, ProgressEngine)


def _kernel_manager_class(terminal: bool = True):
    """The kernel manager nbclient uses.

    - CurveZMQ keys, where pyzmq supports them: the kernel encrypts its local TCP sockets, and ipykernel
      no longer warns at every start that they are plain text (nothing a notebook user can act on).
    - ``terminal``: the kernel runs with ``GDMKIT_PROGRESS=1`` and without capturing its file
      descriptors, so what a notebook writes to ``sys.__stderr__`` (a training progress bar) reaches
      the user's terminal live and stays out of the executed notebook (whose bytes it would change).
    """
    import zmq
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class RunnerKernelManager(AsyncKernelManager):
        @default("transport_encryption")
        def _transport_encryption_default(self):
            # provision keys when the kernelspec declares curve support (ipykernel's does)
            return "auto" if zmq.has("curve") else "disabled"

        async def start_kernel(self, **kw):
            if terminal:
                kw["env"] = {**(kw.get("env") or os.environ), PROGRESS_ENV: "1"}
                kw["extra_arguments"] = [*(kw.get("extra_arguments") or []),
                                         "--IPKernelApp.capture_fd_output=False"]
            return await super().start_kernel(**kw)

    return RunnerKernelManager


# ---------------------------------------------------------------------------------- outputs into place

def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _move_into_place(scratch: Path, final: Path) -> None:
    """Replace each entry of ``final`` by the one of the same name in ``scratch``, then drop ``scratch``.

    Files go by ``os.replace`` (atomic); a folder over a folder by one atomic exchange where the OS has
    it, else by two renames. Entries of ``final`` that the run did not write stay as they are.
    """
    final.mkdir(parents=True, exist_ok=True)
    for new in sorted(scratch.iterdir()):
        dest = final / new.name
        if new.is_dir() and dest.is_dir() and _exchange(new, dest):
            _remove(new)  # now the old folder
            continue
        if dest.is_dir() or (new.is_dir() and dest.exists()):
            old = final / f".{new.name}.old"
            _remove(old)
            dest.rename(old)
            os.replace(new, dest)
            _remove(old)
        else:
            os.replace(new, dest)
    _remove(scratch)


def _history_file(stem: str, profile: str) -> Path:
    return ROOT / HISTORY / f"{stem}.{profile}.json"


def _load_history(path: Path) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text())["seconds"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # no previous run, or an unreadable record: estimate without it


# ---------------------------------------------------------------------------------- the two modes

def _param_names_in(tree, expr, params: dict) -> set[str]:
    """Parameters named in ``expr``, following a loop variable to what its loop iterates over."""
    import ast

    names = {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
    found = names & set(params)
    for loop in ast.walk(tree):  # `for name, steps in (("ar", ar_steps), ...)`, also in comprehensions
        if isinstance(loop, (ast.For, ast.comprehension)):
            bound = {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
            if bound & (names - found):
                found |= {n.id for n in ast.walk(loop.iter) if isinstance(n, ast.Name)} & set(params)
    return found


def _param_hint(nb, params: dict, message: str, stem: str, profile: str) -> str:
    """Which params.yaml keys feed the library setting an error names (e.g. TrainConfig.steps).

    The notebook's ``TrainConfig(steps=train_steps, ...)`` calls are read with ``ast``: the parameters
    named in the keyword's value are the keys the user wrote; failing that, parameters whose name
    contains the field (``steps`` -> ``ar_steps``, ``cdm_steps``).
    """
    import ast

    fields = sorted(set(re.findall(r"TrainConfig\.(\w+)", message or "")))
    hints = []
    for field in fields:
        keys: set[str] = set()
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) \
                        == "TrainConfig":
                    for kw in node.keywords:
                        if kw.arg == field:
                            keys |= _param_names_in(tree, kw.value, params)
        keys = keys or {k for k in params if field in k}
        if keys:
            hints.append(f"TrainConfig.{field} is set by params.yaml "
                         f"{'key' if len(keys) == 1 else 'keys'} {', '.join(sorted(keys))} "
                         f"(block {stem}, profile {profile}): correct the value there.\n")
    return "".join(hints)


DRY_RUN_ROOT = "data/cache/dry_run"  # stand-in data and the dry runs' reports (gitignored)


def dry_run_values(all_params: dict, stem: str, profile: str) -> dict:
    """The values params.yaml's ``dry_run: <stem>:`` block sets for ``profile``: its plain entries, updated
    by its entry named after the profile where it has one (``paper: {classifier_steps: 10}``: a budget that
    only that profile's dry run shrinks further)."""
    block = (all_params.get("dry_run") or {}).get(stem)
    if not isinstance(block, dict):
        _fail(f"params.yaml has no `dry_run: {stem}:` block; add one that shrinks the budgets of {stem} "
              "(steps, samples, grid sizes) and sets `device: cpu`, keeping the code path's settings")
    profiles = set(all_params.get(stem) or {})
    own = block.get(profile) or {}
    if not isinstance(own, dict):
        _fail(f"params.yaml dry_run.{stem}.{profile} must map parameters to values, got {own!r}")
    return {**{k: v for k, v in block.items() if k not in profiles}, **own}


def _dry_run_setup(nb, all_params: dict, stem: str, profile: str, params: dict, data_root: str | None) -> dict:
    """Apply params.yaml ``dry_run: <stem>`` (budgets shrunk, the CPU) to ``params``, write the stand-in
    data and weights, point the kernel at them, and put a cell saying all that into the notebook.
    Returns {key: (profile value, dry-run value)} for every value changed."""
    from gdmkit import standins

    block = dry_run_values(all_params, stem, profile)
    unknown = set(block) - set(params)
    if unknown:
        _fail(f"params.yaml dry_run.{stem} sets {sorted(unknown)}, unknown to the notebook")
    root = Path(data_root or f"{DRY_RUN_ROOT}/standins")
    root = root if root.is_absolute() else ROOT / root
    env = standins.write_all(root)
    changed = {k: (params[k], v) for k, v in block.items() if params[k] != v}
    if "data_root" in params:
        changed["data_root"] = (params["data_root"], str(root))
    params.update({k: v for k, (_, v) in changed.items()})
    what = f"dry run of the {profile} profile: stand-in data and weights, budgets shrunk"
    os.environ.update(env, **{companion.DRY_RUN_ENV: what})
    rows = "\n".join(f"| `{k}` | `{a!r}` | `{b!r}` |" for k, (a, b) in changed.items())
    note = (f"> **DRY RUN** of the `{profile}` profile (`scripts/run_notebook.py --dry-run`). The code path is "
            f"the profile's — its data loader, networks, schedules, samplers, metrics and report layout — "
            f"but the data and the feature-extractor weights are **stand-ins** (random files in the real "
            f"formats, `gdmkit.standins`, under `{_show(root)}`) and these values are shrunk:\n\n"
            f"| parameter | {profile} | dry run |\n|---|---|---|\n{rows}\n\n"
            "Every table carries a `dry run` column and `metrics.json` a `dry_run` entry; asserted claims "
            "that do not hold are recorded without stopping the run. No number here is a result.")
    import nbformat

    nb.cells.insert(1, nbformat.v4.new_markdown_cell(note))
    for k, (a, b) in changed.items():
        print(f"run_notebook: dry run: {k} {a!r} -> {b!r}", file=sys.stderr)
    return changed


def run_profile(source: Path, profile: str | None, out_dir: str | None, dry_run: bool = False,
                data_root: str | None = None, block: str | None = None) -> Path:
    import nbformat
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from gdmkit import files

    stem = block or source.stem
    if not (stem == source.stem or stem.startswith(source.stem + "_")):
        _fail(f"--params {block}: a variant of {source.name} is named {source.stem}_<variant> (e.g. "
              f"{source.stem}_digits), so that its block, stage and reports/ folder say whose variant it is")
    nb = _read(source)
    defaults = companion.parameter_defaults(_parameters_source(nb))
    all_params = companion.load_params(ROOT / "params.yaml")
    try:
        profile, params = companion.profile_params(all_params, stem, profile, defaults=defaults)
    except ValueError as err:
        _fail(str(err))
    unknown = set(params) - _parameter_names(nb)
    if unknown:
        _fail(f"params.yaml sets {sorted(unknown)} for {stem}/{profile}, but the notebook's parameters cell "
              "does not define them; add them there (with their smoke value) or remove them from params.yaml")
    out = str(Path(out_dir or (f"{DRY_RUN_ROOT}/{stem}.{profile}" if dry_run else f"reports/{stem}")))
    final = Path(out) if Path(out).is_absolute() else ROOT / out
    if final.resolve() in (ROOT.resolve(), *ROOT.resolve().parents):
        _fail(f"--out {out_dir} is the repository or a folder above it; pick a folder of the notebook's own, "
              f"e.g. reports/{stem}")
    if dry_run and (ROOT / "reports").resolve() in (final.resolve(), *final.resolve().parents):
        _fail(f"--out {out_dir}: a dry run never writes over the committed reports; drop --out (default "
              f"{DRY_RUN_ROOT}/{stem}.{profile}) or pick a folder outside reports/")
    if dry_run:
        _dry_run_setup(nb, all_params, stem, profile, params, data_root)
    _check_device(params, profile)
    if not dry_run:  # a dry run's data are the stand-ins written just above, read by the notebook's loader
        _check_dataset(params, profile)
    scratch = final.with_name(final.name + ".new")
    _remove(scratch)
    scratch.mkdir(parents=True)
    params.update(profile=profile, out_dir=out)
    run_params = {**params, "out_dir": str(Path(out).with_name(final.name + ".new"))}
    target = scratch / "notebook.ipynb"
    history = _history_file(stem, f"{profile}-dry-run" if dry_run else profile)
    progress = Progress(_load_history(history))
    _register_engine()
    print(f"run_notebook: {source.name}, profile {profile!r}{' (dry run)' if dry_run else ''} -> "
          f"{_show(final)}/", flush=True)
    try:
        nb = papermill.execute_notebook(
            nb, str(target), parameters=run_params, kernel_name="python3", cwd=str(ROOT), progress_bar=False,
            log_output=False, engine_name=ENGINE, stdout_file=sys.stdout, stderr_file=sys.stderr,
            progress=progress, kernel_manager_class=_kernel_manager_class())
    except PapermillExecutionError as err:
        _fail(f"{source.name} stopped in cell {err.exec_count} with {err.ename}: {err.evalue}\n"
              f"{_param_hint(nb, params, err.evalue, stem, profile)}"
              f"(the executed notebook, with the traceback, is {_show(target)}; the previous outputs in "
              f"{_show(final)}/ are unchanged)")
    except DeadKernelError as err:
        _fail(f"the kernel running {source.name} died ({err}); out of memory? The previous outputs in "
              f"{_show(final)}/ are unchanged")
    _normalize(nb, params)
    target.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    _move_into_place(scratch, final)
    files.write_text(history, json.dumps({"seconds": progress.seconds}, indent=1, sort_keys=True) + "\n")
    print(f"run_notebook: {source.name} finished in {_clock(time.monotonic() - progress.t0)}; "
          f"outputs in {_show(final)}/{_headline(final)}", file=sys.stderr, flush=True)
    return final / "notebook.ipynb"


def _headline(out: Path) -> str:
    """The notebook's ``headline.json`` (a few key numbers, if it writes one) as ``; k v, k v``."""
    try:
        values = json.loads((out / "headline.json").read_text())
    except (OSError, ValueError):
        return ""
    return "; " + ", ".join(f"{k} {v}" for k, v in values.items()) if isinstance(values, dict) else ""


def refresh(source: Path) -> Path:
    """Execute with the notebook's defaults (cwd = notebooks/, as nbval does) into the paired .ipynb."""
    import jupytext
    from nbclient import NotebookClient

    nb = _read(source)
    _parameter_names(nb)
    NotebookClient(nb, kernel_name="python3", timeout=1800, kernel_manager_class=_kernel_manager_class(False),
                   resources={"metadata": {"path": str(source.parent)}}).execute()
    _normalize(nb)  # keep the committed file free of run-specific metadata
    target = source.with_suffix(".ipynb")
    jupytext.write(nb, target, fmt="ipynb")
    print(f"run_notebook: wrote the smoke-run outputs to {_show(target)}")
    return target


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", help="notebooks/NN_name.py (the jupytext source)")
    ap.add_argument("--profile", help=f"one of {', '.join(companion.PROFILES)} "
                                      "(default: params.yaml's `profile`)")
    ap.add_argument("--out", help="output folder, absolute or relative to the repository root "
                                  "(default reports/<stem>)")
    ap.add_argument("--refresh", action="store_true",
                    help="execute the smoke defaults into the paired .ipynb")
    ap.add_argument("--dry-run", action="store_true",
                    help="the profile's code path on stand-in data and weights, its budgets shrunk by "
                         f"params.yaml's dry_run block, on the CPU (outputs: {DRY_RUN_ROOT}/<stem>.<profile>)")
    ap.add_argument("--data-root", help=f"where --dry-run writes and reads the stand-ins (default "
                                        f"{DRY_RUN_ROOT}/standins)")
    ap.add_argument("--params", metavar="NAME", help="the params.yaml block to run (default: the notebook's "
                    "stem); <stem>_<variant> runs the notebook as a variant into reports/<stem>_<variant>")
    args = ap.parse_args(argv)
    if args.refresh and args.params:
        _fail("--refresh runs the notebook's own defaults (the smoke profile) into its .ipynb; --params names a "
              "params.yaml block for a profile run: pick one")
    if args.refresh and args.dry_run:
        _fail("--refresh runs the smoke defaults into the .ipynb; --dry-run runs a profile on stand-ins: "
              "pick one")
    source = Path(args.notebook)
    source = source if source.is_absolute() else (Path.cwd() / source)
    if source.suffix == ".ipynb":
        source = source.with_suffix(".py")
    if not source.is_file():
        _fail(f"{args.notebook} does not exist; pass the jupytext source, "
              "e.g. notebooks/01_gaussian_mixture.py")
    if args.refresh:
        refresh(source.resolve())
    else:
        run_profile(source.resolve(), args.profile, args.out, dry_run=args.dry_run, data_root=args.data_root,
                    block=args.params)


if __name__ == "__main__":
    main()
