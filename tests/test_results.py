"""Tests for gdmkit.results: claims, report folder, parameters, content-addressed model cache."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import xarray as xr

from gdmkit import bases, groupings, paths, results, schedules
from gdmkit.nets import MLP
from gdmkit.train import TrainConfig


# ------------------------------------------------------------------------------------- claims

def test_asserted_claim_that_fails_raises_and_is_recorded():
    claims = results.Claims()
    assert claims.check("holds", "1 == 1", True) is None
    with pytest.raises(results.ClaimFailed, match="claim failed: fails .*evidence: 1 != 2"):
        claims.check("fails", "1 != 2", False)
    assert [r.verdict for r in claims.rows] == ["holds", "fails"]
    assert isinstance(results.ClaimFailed("x"), AssertionError)  # a failed claim fails the run like assert


def test_reported_claim_never_raises_and_says_so_plainly():
    claims = results.Claims()
    claims.report("scale-dependent", "ED 0.3 vs 0.1", False)
    claims.report("fine", "ED 0.1 vs 0.3", True)
    claims.inconclusive("A beats B", "10 ± 2 vs 11 ± 2")
    table = claims.table()
    assert list(table.columns) == ["claim", "evidence", "verdict", "checked"]
    assert table["verdict"].tolist() == ["does not hold at this profile", "holds", "not separable at this profile"]
    assert set(table["checked"]) == {"reported"}


def test_summary_lists_only_asserted_claims_without_numbers():
    claims = results.Claims()
    claims.check("exact identity", "max diff 3.1e-17", True)
    claims.report("quality", "ED 0.0123", True)
    summary = claims.summary()
    assert "[holds] exact identity" in summary and "3.1e-17" not in summary and "quality" not in summary
    assert summary.endswith("1 asserted claims checked; 1 reported claims in the claims table")


# ------------------------------------------------------------------------------------- params

def test_profile_params_picks_the_block_and_defaults_to_params_profile():
    params = {"profile": "laptop", "nb": {"smoke": {"a": 1}, "laptop": {"a": 2}}}
    assert results.profile_params(params, "nb") == ("laptop", {"a": 2})
    assert results.profile_params(params, "nb", "smoke") == ("smoke", {"a": 1})


def test_unknown_profile_or_notebook_says_what_to_do():
    params = {"profile": "laptop", "nb": {"smoke": {}, "laptop": {}}}
    with pytest.raises(ValueError, match=r"profile 'gpu' does not exist for nb: choose one of smoke, laptop"):
        results.profile_params(params, "nb", "gpu")
    with pytest.raises(ValueError, match="params.yaml has no block 'other'"):
        results.profile_params(params, "other")


def test_repo_root_finds_params_yaml_upwards(tmp_path):
    (tmp_path / "params.yaml").write_text("profile: smoke\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert results.repo_root(deep) == tmp_path.resolve()
    assert results.load_params(tmp_path / "params.yaml") == {"profile": "smoke"}


# ------------------------------------------------------------------------------------- report

def test_report_writes_every_kind_of_output(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = results.Report(tmp_path / "out")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    rep.figure(fig, "line")
    assert (tmp_path / "out/figures/line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)  # closed after saving

    df = pd.DataFrame({"model": ["a", "b"], "value": [0.5, 0.25]})
    rep.table(df, "values")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out/tables/values.csv"), df)
    assert "| model" in (tmp_path / "out/tables/values.md").read_text()

    da = xr.DataArray([[1.0, 2.0], [3.0, 4.0]], dims=("model", "t"), coords={"model": ["a", "b"], "t": [0.1, 0.2]},
                      name="jac")
    rep.dataset(da, "jac")
    back = xr.open_dataset(tmp_path / "out/data/jac.nc", engine="scipy")
    xr.testing.assert_equal(back["jac"].load(), da)
    back.close()

    rep.metrics(a=1.0, nested={"x": torch.tensor(0.123456789)})
    rep.metrics(b=2)
    assert json.loads((tmp_path / "out/metrics.json").read_text()) == {"a": 1.0, "b": 2, "nested": {"x": 0.123457}}


def test_report_without_folder_writes_nothing_and_bad_names_are_rejected(tmp_path):
    rep = results.Report(None)
    rep.table(pd.DataFrame({"a": [1]}), "t")
    assert rep.metrics(a=1) == {"a": 1}
    with pytest.raises(ValueError, match="bad output name"):
        results.Report(tmp_path).table(pd.DataFrame({"a": [1]}), "../escape")


# ------------------------------------------------------------------------------------- cache

def test_fingerprint_depends_on_content_only():
    a = torch.arange(6.0)
    assert results.fingerprint({"x": a, "y": 1}) == results.fingerprint({"y": 1, "x": a.clone()})
    assert results.fingerprint(a) != results.fingerprint(a.double())
    assert results.fingerprint(a) != results.fingerprint(a.reshape(2, 3))
    assert results.fingerprint([1, 2]) != results.fingerprint([2, 1])


def test_describe_path_sees_the_grouping():
    basis = bases.Pixel((2,))
    one = results.describe_path(paths.DiagonalPath(basis, schedules.GroupwiseSchedule(groupings.single((2,)))))
    two = results.describe_path(paths.DiagonalPath(basis, schedules.GroupwiseSchedule(groupings.per_element((2,)))))
    assert one["coefficients"] != two["coefficients"] and one["basis"] == two["basis"]


def test_cached_train_loads_instead_of_retraining(tmp_path):
    data = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    path = paths.DiagonalPath(bases.Pixel((2,)), schedules.GroupwiseSchedule(groupings.per_element((2,))))
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-2, ckpt_every=100, log_every=1)
    desc = results.describe_path(path)

    def fresh():
        torch.manual_seed(0)
        return MLP(2, hidden=8, depth=1, emb_dim=4)

    first = results.cached_train(path.loss_fn(), fresh(), data, cfg, description=desc, cache_dir=tmp_path)
    again = results.cached_train(path.loss_fn(), fresh(), data, cfg, description=desc, cache_dir=tmp_path)
    assert (first.resumed_from, again.resumed_from) == (0, 3)  # the second run trained nothing
    for p, q in zip(first.ema.parameters(), again.ema.parameters()):
        assert torch.equal(p, q)
    other = results.cached_train(path.loss_fn(), fresh(), data, cfg, description={**desc, "target": "x0"},
                                 cache_dir=tmp_path)
    assert other.resumed_from == 0  # another description is another model
    keys = sorted(tmp_path.glob("*/key.json"))
    assert len(keys) == 2 and json.loads(keys[0].read_text())["train_config"]["steps"] == 3


def test_markdown_tables_escape_pipes(tmp_path):
    df = pd.DataFrame({"mean|Δ|": [0.5], "evidence": ["max |x| = 1"]})
    results.Report(tmp_path).table(df, "t")
    header, _, row = (tmp_path / "tables/t.md").read_text().splitlines()
    assert header.count(" | ") == 1 and row.count(" | ") == 1  # two columns, the pipes inside are escaped
    assert "mean\\|Δ\\|" in header and "max \\|x\\| = 1" in row
