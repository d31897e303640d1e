"""Stage 9: how regression observations are formed, both observation modes, and the stage's
behaviour when the data cannot carry a model."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import statsmodels.formula.api as smf

from polyculture.errors import ConfigError
from polyculture.wvs.alignment import build_analysis_data, replicates
from polyculture.wvs.regressions import (
    BASELINE_MODEL,
    COEF_COLUMNS,
    RegressionSpec,
    add_uniform_baseline,
    drop_terms,
    mixed_observations,
    not_estimable_reason,
    parse_terms,
    regression_stage,
    run_cluster_mode,
    run_replicates_mode,
    us_observations,
)
from polyculture.wvs.speccurve import simulate_study


@pytest.fixture(scope="module")
def study():
    responses, gt, capability, cl = simulate_study(
        effect=0.8, seed=3, languages=("da", "en"), n_topics=15, responses_per_topic=4
    )
    return build_analysis_data(responses, gt, cl), capability


def test_mixed_observations_by_ground_truth(study):
    data, capability = study
    rep = replicates(data, "cluster", 0, seed=1, released_level=None)
    al = rep.alignment.filter((pl.col("replicate") == -1) & (pl.col("unit") == "topic"))
    lang = mixed_observations(rep, data, capability, ground_truth="language", unit="topic")
    assert lang.height == len(data.cells)
    assert set(lang.columns) == {
        "replicate",
        "model",
        "family",
        "language",
        "alignment",
        "consistency",
        "capability",
    }
    one = lang.filter((pl.col("model") == "f1-m0") & (pl.col("language") == "da"))["alignment"][0]
    expect = al.filter(
        (pl.col("model") == "f1-m0") & (pl.col("level") == "language") & (pl.col("group") == "da")
    )["alignment"][0]
    assert one == pytest.approx(expect)
    # country: the mean over the language's local countries (here one: CDA)
    country = mixed_observations(rep, data, capability, ground_truth="country", unit="topic")
    c = country.filter((pl.col("model") == "f1-m0") & (pl.col("language") == "da"))["alignment"][0]
    assert c == pytest.approx(
        al.filter((pl.col("model") == "f1-m0") & (pl.col("group") == "CDA"))["alignment"][0]
    )
    with pytest.raises(ConfigError, match="unknown ground truth 'region'"):
        mixed_observations(rep, data, capability, ground_truth="region", unit="topic")


def test_us_observations_mark_the_us_and_local_countries(study):
    data, _ = study
    rep = replicates(data, "cluster", 0, seed=1, released_level=None)
    obs = us_observations(rep, data, unit="topic")
    da = obs.filter((pl.col("model") == "f1-m0") & (pl.col("language") == "da"))
    assert sorted(zip(da["group"], da["us"], strict=True)) == [("CDA", False), ("US", True)]
    en = obs.filter((pl.col("model") == "f1-m0") & (pl.col("language") == "en"))
    assert sorted(zip(en["group"], en["us"], strict=True)) == [("CEN", False), ("US", True)]


def test_replicates_mode_counts_every_replicate_as_an_observation(study):
    data, capability = study
    spec = RegressionSpec("mixed_model", "alignment ~ capability", "ols", groups=None)
    res = run_replicates_mode(spec, data, capability, rounds=7, resample_size=None, seed=2)
    assert res.info["n_obs"] == 7 * len(data.cells)
    assert res.info["n_cells"] == len(data.cells)
    assert "treated as independent observations" in res.note
    assert list(res.coefficients.columns[: len(COEF_COLUMNS)]) == list(COEF_COLUMNS)
    assert set(res.coefficients["mode"]) == {"replicates"}


def test_cluster_mode_point_estimate_is_the_fit_on_one_observation_per_cell(study):
    data, capability = study
    spec = RegressionSpec("mixed_model", "alignment ~ capability", "ols", groups=None)
    res = run_cluster_mode(spec, data, capability, rounds=60, seed=4)
    assert res.info["n_obs"] == len(data.cells)
    direct = smf.ols("alignment ~ capability", res.observations.to_pandas()).fit()
    coefs = dict(zip(res.coefficients["term"], res.coefficients["coef"], strict=True))
    assert coefs["capability"] == pytest.approx(direct.params["capability"])
    row = res.coefficients.filter(pl.col("term") == "capability").row(0, named=True)
    assert row["ci_low"] < row["ci_high"]
    assert row["z"] == pytest.approx(row["coef"] / row["std_err"])
    assert 0 < row["p"] <= 1
    assert res.info["n_boot_failed"] == 0


def test_mixed_model_fits_with_a_random_intercept_per_model(study):
    data, capability = study
    spec = RegressionSpec(
        "mixed_model", "alignment ~ 0 + consistency + capability:family:language", "mixedlm"
    )
    stage = regression_stage(
        spec,
        data,
        capability,
        modes=["replicates", "cluster_bootstrap"],
        rounds=5,
        resample_size=None,
        cluster_rounds=20,
        seed=1,
    )
    assert stage.fit["estimable"]
    for mode in ("replicates", "cluster_bootstrap"):
        assert stage.fit["modes"][mode]["converged"]
        assert stage.fit["modes"][mode]["n_groups"] == 6
        terms = stage.coefficients.filter(
            (pl.col("mode") == mode) & pl.col("term").str.starts_with("capability")
        )
        assert sorted(zip(terms["family"], terms["language"], strict=True)) == [
            (f, lang) for f in ("f1", "f2") for lang in ("da", "en")
        ]
    assert "mode: replicates" in stage.summary and "mode: cluster_bootstrap" in stage.summary


def test_us_bias_uses_the_uniform_baseline_as_reference(study):
    data, capability = study
    spec = RegressionSpec("us_bias", "alignment ~ us * model:language", "ols", groups=None)
    stage = regression_stage(
        spec,
        data,
        None,
        modes=["cluster_bootstrap"],
        rounds=5,
        resample_size=None,
        cluster_rounds=20,
        seed=1,
    )
    terms = stage.coefficients["term"].to_list()
    assert "Intercept" in terms and "us[T.True]" in terms
    assert not any(BASELINE_MODEL in t for t in terms)  # the reference level has no term
    us_terms = stage.coefficients.filter(pl.col("term").str.starts_with("us[T.True]:model"))
    assert us_terms.height == 6 * 2  # every model × language
    assert "reference model: baseline-uniform" in stage.summary


def test_uniform_baseline_is_seeded_and_mirrors_a_model(study):
    data, _ = study
    a = add_uniform_baseline(data, 5)
    b = add_uniform_baseline(data, 5)
    base = [c for c in a.cells if c.model == BASELINE_MODEL]
    assert len(base) == 2
    assert all(
        np.array_equal(x.value, y.value)
        for x, y in zip(base, [c for c in b.cells if c.model == BASELINE_MODEL], strict=True)
    )
    assert (
        base[0].n
        == min((c for c in data.cells if c.language == base[0].language), key=lambda c: c.model).n
    )


def test_not_estimable_is_reported_not_faked():
    responses, gt, capability, cl = simulate_study(
        effect=0.0, seed=1, families=("f1",), models_per_family=1
    )
    data = build_analysis_data(responses, gt, cl)
    spec = RegressionSpec(
        "mixed_model", "alignment ~ 0 + consistency + capability:family:language", "mixedlm"
    )
    assert "at least 2 models" in not_estimable_reason(spec, data, capability)
    stage = regression_stage(
        spec,
        data,
        capability,
        modes=["replicates"],
        rounds=3,
        resample_size=None,
        cluster_rounds=3,
        seed=1,
    )
    assert stage.coefficients.height == 0 and not stage.fit["estimable"]
    assert "NOT ESTIMABLE" in stage.summary
    no_us = build_analysis_data(responses, gt.filter(pl.col("group") != "US"), cl)
    assert "no ground truth for the US" in not_estimable_reason(
        RegressionSpec("us_bias", "alignment ~ us", "ols"), no_us, None
    )


def test_drop_terms_and_parse_terms():
    assert (
        drop_terms("alignment ~ 0 + consistency + capability:family:language", "consistency")
        == "alignment ~ 0 + capability:family:language"
    )
    assert (
        drop_terms("alignment ~ consistency:language + capability", "consistency")
        == "alignment ~ capability"
    )
    parsed = parse_terms(
        pl.DataFrame(
            {
                "term": [
                    "capability:family[gemma]:language[da]",
                    "us[T.True]:model[T.gpt-4o]:language[pt]",
                    "consistency",
                ]
            }
        )
    )
    assert parsed.select("family", "language", "model").rows() == [
        ("gemma", "da", None),
        (None, "pt", "gpt-4o"),
        (None, None, None),
    ]


def test_a_formula_that_does_not_fit_the_observations_names_the_formula(study):
    data, capability = study
    spec = RegressionSpec("mixed_model", "alignment ~ nonsense", "ols", groups=None)
    with pytest.raises(ConfigError, match="'alignment ~ nonsense' does not fit the observations"):
        run_cluster_mode(spec, data, capability, rounds=3, seed=1)


def test_same_seed_same_outputs(study):
    data, _ = study
    spec = RegressionSpec("us_bias", "alignment ~ us * model:language", "ols", groups=None)
    kw = dict(
        modes=["replicates", "cluster_bootstrap"],
        rounds=4,
        resample_size=None,
        cluster_rounds=10,
        seed=8,
    )
    a = regression_stage(spec, data, None, **kw)
    b = regression_stage(spec, data, None, **kw)
    assert a.summary == b.summary  # no clock in the OLS summary
    assert a.coefficients.equals(b.coefficients, null_equal=True)
    assert "Date:                ----------------" in a.summary


def test_terms_without_observations_are_left_out_and_named(study):
    data, capability = study
    # no capability for family f2 in Danish: its capability term has no observation
    cap = capability.filter(~(pl.col("model").str.starts_with("f2") & (pl.col("language") == "da")))
    spec = RegressionSpec(
        "mixed_model", "alignment ~ 0 + capability:family:language", "ols", groups=None
    )
    stage = regression_stage(
        spec,
        data,
        cap,
        modes=["cluster_bootstrap"],
        rounds=3,
        resample_size=None,
        cluster_rounds=10,
        seed=1,
    )
    terms = stage.coefficients["term"].to_list()
    assert (
        "capability:family[f2]:language[da]" not in terms
        and "capability:family[f1]:language[da]" in terms
    )
    assert (
        "terms without any observation (left out): capability:family[f2]:language[da]"
        in stage.summary
    )
    assert "f2-m0/da" in stage.summary  # the cells without capability are named


def test_no_usable_alignment_is_not_estimable():
    # two topics: no correlation can be computed for any model
    responses, gt, capability, cl = simulate_study(effect=0.0, seed=2, n_topics=2)
    data = build_analysis_data(responses, gt, cl)
    spec = RegressionSpec("us_bias", "alignment ~ us * model:language", "ols", groups=None)
    stage = regression_stage(
        spec,
        data,
        None,
        modes=["replicates", "cluster_bootstrap"],
        rounds=3,
        resample_size=None,
        cluster_rounds=5,
        seed=1,
    )
    assert not stage.fit["estimable"] and "no model has a usable alignment" in stage.fit["reason"]
