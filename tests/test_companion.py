"""Tests for gdmkit.companion: claims, report folder, parameters and the config-keyed model cache."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from gdmkit import companion, files

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- claims

def test_asserted_claim_that_fails_raises_and_is_recorded():
    claims = companion.Claims()
    assert claims.check("holds", "1 == 1", True) is None
    with pytest.raises(companion.ClaimFailed, match="claim failed: fails .*evidence: 1 != 2"):
        claims.check("fails", "1 != 2", False)
    assert [r.verdict for r in claims.rows] == ["holds", "fails"]
    assert isinstance(companion.ClaimFailed("x"), AssertionError)  # a failed claim fails the run like assert


def test_reported_claim_never_raises_on_a_finite_verdict_and_says_so_plainly():
    claims = companion.Claims()
    claims.report("scale-dependent", "ED 0.3 vs 0.1", False, values={"ed": 0.3, "floor": 0.1})
    claims.report("fine", "ED 0.1 vs 0.3", True)
    claims.report("overlapping", "10 ± 2 vs 11 ± 2", True, decidable=False)
    claims.inconclusive("A beats B", "10 ± 2 vs 11 ± 2")
    table = claims.table()
    assert list(table.columns) == ["claim", "evidence", "verdict", "checked"]
    assert table["verdict"].tolist() == ["does not hold at this profile", "holds", companion.INCONCLUSIVE,
                                         companion.INCONCLUSIVE]
    assert set(table["checked"]) == {"reported"}


def test_summary_lists_only_asserted_claims_without_numbers():
    claims = companion.Claims()
    claims.check("exact identity", "max diff 3.1e-17", True)
    claims.report("quality", "ED 0.0123", True)
    summary = claims.summary()
    assert "[holds] exact identity" in summary and "3.1e-17" not in summary and "quality" not in summary
    assert summary.endswith("1 asserted claims checked; 1 reported claims in the claims table")


NAN = float("nan")


@pytest.mark.parametrize("evidence, holds, values, why", [
    ("ED 0.003 vs floor 0.0004", True, {"ed_trained": NAN, "floor": 4e-4}, "ed_trained is NaN"),
    ("ED 0.003 vs floor 0.0004", False, {"ed_trained": 3e-3, "floor": None}, "floor is missing"),
    ("ED 0.003 vs floor 0.0004", False, {"ratio": math.inf}, "ratio is infinite"),
    ("ED 0.003", False, {"ed": torch.tensor([0.1, NAN])}, "ed is NaN"),
    ("ED 0.003", False, {"ed": np.float64(NAN)}, "ed is NaN"),
    ("ED 0.003", False, {"per_run": []}, "per_run is empty"),
    ("ED nan vs floor 0.0004", False, None, "contains 'nan'"),
    ("ratio -inf", False, None, "contains '-inf'"),
    ("ED NaN", True, None, "contains 'NaN'"),
    ("", True, None, "evidence text is empty"),
    ("ED 0.1 < 0.2", NAN, None, "holds is NaN"),  # bool(nan) is True: a NaN verdict must not pass
])
@pytest.mark.parametrize("kind", ["check", "report", "report_undecidable", "inconclusive"])
def test_no_verdict_rests_on_nan_or_missing_evidence(kind, evidence, holds, values, why):
    claims = companion.Claims()
    call = {"check": lambda: claims.check("c", evidence, holds, values=values),
            "report": lambda: claims.report("c", evidence, holds, values=values),
            "report_undecidable": lambda: claims.report("c", evidence, holds, decidable=False, values=values),
            "inconclusive": lambda: claims.inconclusive("c", evidence, values=values)}[kind]
    if kind == "inconclusive" and "holds" in why:
        return  # inconclusive takes no verdict
    with pytest.raises(companion.ClaimFailed, match=re.escape(why)):
        call()
    assert [r.verdict for r in claims.rows] == [companion.BAD_EVIDENCE]
    assert claims.table()["verdict"].tolist() == ["fails: evidence is NaN or missing"]


def test_words_that_contain_nan_or_inf_are_not_nan_evidence():
    claims = companion.Claims()
    claims.report("information is kept", "nanoseconds: 12; Inference ratio 0.3; inf-norm 0.1; L-inf 0.2", True,
                  values={"ratio": 0.3, "ok": True, "n": np.int64(3), "t": torch.tensor(1.0)})
    assert claims.rows[0].verdict == "holds"


def test_a_caught_bad_evidence_failure_still_fails_the_summary_and_the_saved_table(tmp_path):
    claims = companion.Claims()
    claims.check("exact", "0 == 0", True)
    with pytest.raises(companion.ClaimFailed):
        claims.report("quality", "ED 0.1", False, values={"ed": NAN})
    msg = "1 claim\\(s\\) rest on NaN or missing evidence: 'quality'"
    with pytest.raises(companion.ClaimFailed, match=msg):
        claims.summary()
    rep = companion.Report(tmp_path)
    with pytest.raises(companion.ClaimFailed):
        rep.claims(claims)
    assert "fails: evidence is NaN or missing" in (tmp_path / "tables/claims.md").read_text()  # the record


def test_values_must_be_a_mapping():
    with pytest.raises(ValueError, match="values must be a dict"):
        companion.Claims().report("c", "ED 0.1", True, values=[0.1])


# ------------------------------------------------------------------------------------- params

def test_profile_params_picks_the_block_and_defaults_to_params_profile():
    params = {"profile": "laptop", "nb": {"smoke": {"a": 1}, "laptop": {"a": 2}}}
    assert companion.profile_params(params, "nb") == ("laptop", {"a": 2})
    assert companion.profile_params(params, "nb", "smoke") == ("smoke", {"a": 1})


def test_unknown_profile_or_notebook_says_what_to_do():
    params = {"profile": "laptop", "nb": {"smoke": {}, "laptop": {}}}
    with pytest.raises(ValueError, match=r"profile 'gpu' does not exist for nb: choose one of smoke, laptop"):
        companion.profile_params(params, "nb", "gpu")
    with pytest.raises(ValueError, match="params.yaml has no block 'other'"):
        companion.profile_params(params, "other")


SMOKE = {"train_steps": 1500, "lr": 0.003, "bf16": False, "k": [1, 2]}


@pytest.mark.parametrize("change, defaults, message", [
    ({"train_steps": "5000"}, None,
     r"params.yaml: nb.laptop.train_steps is '5000' \(str\), but the smoke profile is 1500: expected an "
     r"integer; write it without quotes: `train_steps: 5000`"),
    ({"lr": "0.002"}, SMOKE, r"nb.laptop.lr is '0.002' \(str\), but the notebook's default is 0.003: "
                             r"expected a number; write it without quotes: `lr: 0.002`"),
    ({"lr": "1e-3"}, None, r"nb.laptop.lr is '1e-3'.*exponent without a decimal point.*`lr: 0.001`"),
    ({"lr": "fast"}, None, r"nb.laptop.lr is 'fast'.*expected a number; write a number, e.g. `lr: 0.003`"),
    ({"train_steps": 5000.0}, None, r"nb.laptop.train_steps is 5000.0 \(float\).*expected an integer"),
    ({"train_steps": True}, None, r"nb.laptop.train_steps is True \(bool\).*expected an integer"),
    ({"bf16": 1}, SMOKE, r"nb.laptop.bf16 is 1 \(int\).*expected a boolean"),
    ({"k": [1, "2"]}, SMOKE, r"nb.laptop.k is \[1, '2'\].*expected a list"),
    ({"k": 3}, None, r"nb.laptop.k is 3 \(int\).*expected a list"),
])
def test_profile_params_checks_types_in_the_users_terms(change, defaults, message):
    params = {"profile": "smoke", "nb": {"smoke": dict(SMOKE), "laptop": {**SMOKE, **change}}}
    assert companion.profile_params({**params, "nb": {"smoke": SMOKE, "laptop": SMOKE}}, "nb", "laptop")
    with pytest.raises(ValueError, match=message):
        companion.profile_params(params, "nb", "smoke", defaults=defaults)  # any profile checks the block


def test_a_smoke_value_of_the_wrong_type_is_caught_against_the_notebook_default():
    params = {"nb": {"smoke": {"n": "20"}, "laptop": {"n": 40}}}
    with pytest.raises(ValueError, match=r"nb.smoke.n is '20' \(str\), but the notebook's default is 20"):
        companion.profile_params(params, "nb", "laptop", defaults={"n": 20})
    with pytest.raises(ValueError, match=r"nb.laptop.n is 40 \(int\), but the smoke profile is '20'"):
        companion.profile_params(params, "nb", "laptop")  # without defaults the smoke set gives the types


def test_none_fits_anywhere_and_an_integer_is_a_fine_number():
    smoke, paper = {"threads": 1, "lr": 0.003, "n": None}, {"threads": None, "lr": 1, "n": 5}
    params = {"nb": {"smoke": smoke, "paper": paper}}
    assert companion.profile_params(params, "nb", "paper", defaults=smoke) == ("paper", paper)


def test_a_key_missing_from_one_profile_is_an_error_naming_keys_and_profile():
    full = {"a": 1, "b": 2, "c": 3}
    params = {"nb": {"smoke": full, "laptop": dict(full), "paper": {"a": 1}}}
    with pytest.raises(ValueError, match=r"profile 'paper' of nb lacks b, c, which smoke, laptop set"):
        companion.profile_params(params, "nb", "laptop")


def _parameters_cell(source: str) -> str:
    cell = source.split('# %% tags=["parameters"]\n', 1)[1]
    return cell.split("\n# %%", 1)[0]


def test_the_repository_params_yaml_passes_its_own_checks():
    params = companion.load_params(ROOT / "params.yaml")
    for nb in sorted((ROOT / "notebooks").glob("[0-9]*.py")):
        if nb.stem not in params:
            continue
        defaults = companion.parameter_defaults(_parameters_cell(nb.read_text()))
        for profile in params[nb.stem]:
            got_profile, got = companion.profile_params(params, nb.stem, profile, defaults=defaults)
            assert got_profile == profile and set(got) <= set(defaults), nb.stem


def test_parameter_defaults_reads_literals_only():
    cell = 'profile = "smoke"  # comment\nn = 20\nk = [1, 2]\nx = None\ny = n * 2\n'
    assert companion.parameter_defaults(cell) == {"profile": "smoke", "n": 20, "k": [1, 2], "x": None}


def test_repo_root_finds_params_yaml_upwards(tmp_path):
    (tmp_path / "params.yaml").write_text("profile: smoke\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert companion.repo_root(deep) == tmp_path.resolve()
    assert companion.load_params(tmp_path / "params.yaml") == {"profile": "smoke"}


def test_setup_notebook_rejects_bad_thread_counts():
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            companion.setup_notebook(threads=bad, style=False)


# ------------------------------------------------------------------------------------- report

def test_report_writes_every_kind_of_output_atomically(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    real = files.atomic_write
    monkeypatch.setattr(files, "atomic_write",
                        lambda path, write: written.append(Path(path)) or real(path, write))

    rep = companion.Report(tmp_path / "out")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    rep.figure(fig, "line")
    assert (tmp_path / "out/figures/line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)  # closed after saving

    df = pd.DataFrame({"model": ["a", "b"], "value": [0.5, 0.25]})
    rep.table(df, "values")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out/tables/values.csv"), df)
    assert "| model" in (tmp_path / "out/tables/values.md").read_text()

    da = xr.DataArray([[1.0, 2.0], [3.0, 4.0]], dims=("model", "t"),
                      coords={"model": ["a", "b"], "t": [0.1, 0.2]}, name="jac")
    rep.dataset(da, "jac")
    back = xr.open_dataset(tmp_path / "out/data/jac.nc", engine="scipy")
    xr.testing.assert_equal(back["jac"].load(), da)
    back.close()

    rep.metrics(a=1.0, nested={"x": torch.tensor(0.123456789)})
    rep.metrics(b=2)
    expected = {"a": 1.0, "b": 2, "nested": {"x": 0.123457}}  # 6 significant digits
    assert json.loads((tmp_path / "out/metrics.json").read_text()) == expected
    on_disk = {p for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert on_disk == set(written)  # every file went through the one atomic writer, no temp file left


@pytest.mark.parametrize("values, key", [
    ({"ed": NAN}, "metric ed is nan"),
    ({"ratio": -math.inf}, "metric ratio is -inf"),
    ({"final_loss": {"scalar": 0.1, "gdm": NAN}}, "metric final_loss.gdm is nan"),
    ({"per_run": [0.1, np.float32(NAN)]}, r"metric per_run\[1\] is nan"),
    ({"t": torch.tensor(math.inf)}, "metric t is inf"),
])
def test_report_metrics_refuse_nan_and_inf_naming_the_key(tmp_path, values, key):
    rep = companion.Report(tmp_path)
    rep.metrics(ok=0.5)
    with pytest.raises(ValueError, match=key):
        rep.metrics(fine=1.0, **values)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"ok": 0.5}  # nothing merged


def test_report_without_folder_writes_nothing_and_bad_names_are_rejected(tmp_path):
    rep = companion.Report(None)
    rep.table(pd.DataFrame({"a": [1]}), "t")
    assert rep.metrics(a=1) == {"a": 1}
    for r in (rep, companion.Report(tmp_path)):
        with pytest.raises(ValueError, match="bad output name"):
            r.table(pd.DataFrame({"a": [1]}), "../escape")


def test_markdown_tables_escape_pipes(tmp_path):
    df = pd.DataFrame({"mean|Δ|": [0.5], "evidence": ["max |x| = 1"]})
    companion.Report(tmp_path).table(df, "t")
    header, _, row = (tmp_path / "tables/t.md").read_text().splitlines()
    assert header.count(" | ") == 1 and row.count(" | ") == 1  # two columns, the pipes inside are escaped
    assert "mean\\|Δ\\|" in header and "max \\|x\\| = 1" in row


def test_the_library_never_imports_the_companion():
    import subprocess
    import sys

    code = ("import pkgutil, importlib, sys, gdmkit\n"
            "todo = [(gdmkit.__path__, 'gdmkit.')]\n"
            "while todo:\n"  # walk_packages would import the companion package itself
            "    path, prefix = todo.pop()\n"
            "    for m in pkgutil.iter_modules(path, prefix):\n"
            "        if m.name != 'gdmkit.companion':\n"
            "            mod = importlib.import_module(m.name)\n"
            "            if m.ispkg: todo.append((mod.__path__, m.name + '.'))\n"
            "print(sorted(n for n in sys.modules if n.startswith('gdmkit.companion')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_headline_is_flat_short_and_finite(tmp_path):
    import json as _json

    from gdmkit import companion

    report = companion.Report(tmp_path)
    out = report.headline(ed_trained=0.00042137, prop33_ratio=4.8e-7, metric="FD_classifier")
    assert out == {"ed_trained": 0.0004214, "prop33_ratio": 4.8e-7, "metric": "FD_classifier"}
    assert _json.loads((tmp_path / "headline.json").read_text()) == out
    with pytest.raises(ValueError, match="at most 6"):
        report.headline(**{f"k{i}": 1.0 for i in range(7)})
    with pytest.raises(ValueError, match="one number"):
        report.headline(table={"a": 1.0})
    with pytest.raises(ValueError, match="bad_value"):
        report.headline(bad_value=float("nan"))


def test_report_dataset_refuses_names_netcdf3_cannot_store(tmp_path):
    import xarray as xr

    report = companion.Report(tmp_path)
    ok = xr.Dataset({"nll": (("a",), [1.0, 2.0])}, coords={"a": ["γ=1", "γ=2"]}, attrs={"note": "γ values"})
    report.dataset(ok, "fine")  # non-Latin-1 text in values is stored
    assert (tmp_path / "data" / "fine.nc").is_file()
    bad = xr.Dataset({"γ_min": (("a",), [1.0, 2.0])})
    with pytest.raises(ValueError, match="Latin-1.*γ_min"):
        report.dataset(bad, "bad")
    assert not (tmp_path / "data" / "bad.nc").exists()
