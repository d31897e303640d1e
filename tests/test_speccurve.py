"""Issue 9: the specification curve — grid, tidy table, per-term summary, and on synthetic data
with a known effect: the curve recovers it, and a null effect keeps the nominal false-positive
rate under the cluster-bootstrap unit but not when bootstrap replicates are observations."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import copy_workflow, run_snakemake

from polyculture.errors import ConfigError
from polyculture.io import read_yaml
from polyculture.wvs.alignment import build_analysis_data
from polyculture.wvs.speccurve import (
    Defaults,
    expand_grid,
    grid_size_message,
    key_terms,
    run_speccurve,
    simulate_study,
    speccurve_stage,
    term_summary,
)

GRID = {
    "regressions": ["mixed_model", "us_bias"],
    "ground_truth": ["language", "country"],
    "units": ["topic", "response"],
    "observation_units": ["replicates", "cluster_bootstrap"],
    "resample_sizes": [None, 50],
    "rounds": [10],
    "consistency": [True, False],
    "cluster_rounds": 40,
    "key_terms": {"mixed_model": "^capability", "us_bias": r"^us\[T\.True\]:model"},
    "max_specs": 64,
}
OLS_DEFAULTS = Defaults(
    mixed_formula="alignment ~ consistency + capability",
    us_formula="alignment ~ us * model:language",
    mixed_kind="ols",
)


def test_grid_multiplies_only_the_choices_that_apply():
    specs = expand_grid(GRID, 40)
    mixed = [s for s in specs if s.regression == "mixed_model"]
    us = [s for s in specs if s.regression == "us_bias"]
    # mixed: 2 ground truths × 2 units × 2 consistency × (2 replicate sizes + 1 cluster)
    assert len(mixed) == 2 * 2 * 2 * 3
    # US bias: countries only, no consistency choice: 2 units × 3
    assert len(us) == 2 * 3
    assert all(
        s.rounds == 40 and s.resample_size is None
        for s in specs
        if s.observation == "cluster_bootstrap"
    )
    assert "30 specifications" in grid_size_message(specs)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("units", ["paragraph"], "unknown choice.*'paragraph'"),
        ("ground_truth", ["region"], "unknown choice.*'region'"),
        ("observation_units", ["jackknife"], "unknown choice.*'jackknife'"),
    ],
)
def test_bad_choice_names_fail_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"alignment\.speccurve\.{key}.*{message}"):
        expand_grid({**GRID, key: value}, 40)


def test_bad_grid_shapes_fail():
    with pytest.raises(ConfigError, match="resample_sizes"):
        expand_grid({**GRID, "resample_sizes": [1]}, 40)
    with pytest.raises(ConfigError, match="regressions.*non-empty"):
        expand_grid({**GRID, "regressions": []}, 40)
    with pytest.raises(ConfigError, match="unknown key"):
        expand_grid({**GRID, "colour": "red"}, 40)


@pytest.fixture(scope="module")
def effect_study():
    responses, gt, capability, cl = simulate_study(
        effect=1.2, seed=21, languages=("da", "en"), n_topics=30
    )
    return build_analysis_data(responses, gt, cl), capability


def test_table_has_one_row_per_specification_and_term_and_recovers_the_effect(
    effect_study, tmp_path
):
    data, capability = effect_study
    grid = {**GRID, "resample_sizes": [None], "consistency": [True], "ground_truth": ["language"]}
    table, summary = speccurve_stage(
        data,
        capability,
        grid=grid,
        defaults=OLS_DEFAULTS.__dict__,
        seed=5,
        figure_dir=tmp_path / "figs",
    )
    specs = expand_grid(grid, 40)
    n_terms = {
        "mixed_model": 3,
        "us_bias": table.filter(pl.col("regression") == "us_bias")["term"].n_unique(),
    }
    assert table.height == sum(n_terms[s.regression] for s in specs)
    assert table.select("regression", "spec_id", "term").is_duplicated().sum() == 0
    for col in (
        "ground_truth",
        "unit",
        "observation",
        "resample_size",
        "rounds",
        "consistency",
        "coef",
        "ci_low",
        "ci_high",
        "sign",
        "significant",
    ):
        assert col in table.columns
    cap = table.filter(pl.col("term") == "capability")
    assert (cap["coef"] > 0).all()  # every specification finds the positive effect
    assert cap.filter(pl.col("observation") == "cluster_bootstrap")["significant"].all()
    row = summary.filter(pl.col("term") == "capability").row(0, named=True)
    assert row["share_same_sign"] == 1.0 and row["default_significant"]
    # one figure per key term
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert "mixed_model__capability.png" in names
    assert sum(n.startswith("us_bias__us_T.True_") for n in names) == 2 * 6


def test_term_summary_shares():
    t = pl.DataFrame(
        {
            "regression": ["r"] * 4,
            "term": ["x"] * 4,
            "is_default": [True, False, False, False],
            "observation": ["cluster_bootstrap", "cluster_bootstrap", "replicates", "replicates"],
            "coef": [0.5, -0.1, 0.4, 0.3],
            "sign": [1, -1, 1, 1],
            "significant": [False, False, True, True],
        }
    )
    s = term_summary(t).row(0, named=True)
    assert s["share_same_sign"] == 0.75 and s["share_significant"] == 0.5
    assert s["share_significant_replicates"] == 1.0 and s["share_significant_cluster"] == 0.0
    assert s["default_coef"] == 0.5
    only = key_terms(
        t.with_columns(pl.Series("term", ["capability:a", "x", "y", "capability:b"])),
        {"r": "^capability"},
    )
    assert only["term"].to_list() == ["capability:a", "capability:b"]


def test_null_effect_false_positive_rates_by_observation_unit():
    """40 synthetic studies without any capability effect: the cluster-bootstrap unit rejects at
    about (at most) the nominal 5%; counting 20 bootstrap replicates as observations rejects in
    most studies. (The cluster bootstrap is a little conservative with ~25 topics: bootstrap
    standard errors of rank correlations run ~20% above their sampling SD.)"""
    grid = {
        "regressions": ["mixed_model"],
        "ground_truth": ["language"],
        "units": ["topic"],
        "observation_units": ["replicates", "cluster_bootstrap"],
        "resample_sizes": [None],
        "rounds": [20],
        "consistency": [False],
    }
    specs = expand_grid(grid, 100)
    defaults = Defaults(mixed_formula="alignment ~ capability", us_formula="", mixed_kind="ols")
    rejections = {"replicates": 0, "cluster_bootstrap": 0}
    n_sim = 40
    for s in range(n_sim):
        responses, gt, capability, cl = simulate_study(effect=0.0, seed=1000 + s)
        table = run_speccurve(
            build_analysis_data(responses, gt, cl), capability, specs, defaults, seed=s
        )
        for row in table.filter(pl.col("term") == "capability").iter_rows(named=True):
            rejections[row["observation"]] += row["significant"]
    fpr = {k: v / n_sim for k, v in rejections.items()}
    assert fpr["cluster_bootstrap"] <= 0.10, fpr
    assert fpr["replicates"] >= 0.40, fpr


def test_simulation_is_seeded_and_has_the_known_structure():
    a = simulate_study(effect=0.5, seed=7)
    b = simulate_study(effect=0.5, seed=7)
    assert all(x.equals(y) for x, y in zip(a, b, strict=True))
    responses, gt, capability, cl = a
    assert responses.height == 6 * 2 * 25 * 6
    assert set(gt["group"]) == {"da", "nl", "CDA", "CNL", "US"}
    assert np.all(
        (responses["pro_score"].to_numpy() >= 0) & (responses["pro_score"].to_numpy() <= 1)
    )


def _config_with(work, name: str, speccurve: dict) -> str:
    """The demo config with its alignment.speccurve section replaced, as a whole config file."""
    cfg = read_yaml(work / "config.yaml")
    cfg["alignment"]["speccurve"] = speccurve
    path = work / name
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


def test_bad_choice_in_the_config_fails_before_any_job(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    proc = run_snakemake(
        work,
        "-n",
        "--configfile",
        _config_with(work, "bad.yaml", {"units": ["paragraph"]}),
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "paragraph" in out and "speccurve" in out and "Job stats" not in out
    proc = run_snakemake(
        work, "-n", "--configfile", _config_with(work, "big.yaml", {"max_specs": 2}), check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "alignment.speccurve.max_specs" in out and "Job stats" not in out
