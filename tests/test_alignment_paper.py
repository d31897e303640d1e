"""The paper's choices as configuration: named mixed-model formulas (Eq. 1 and the released
variants) and the specification curve over them, the distribution metrics beside Spearman and
their place in the curve, the country set, low-n flags, answer code 0 and the survey stop."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import binom, wasserstein_distance

from polyculture.errors import ConfigError, InputError
from polyculture.wvs.alignment import alignment_table, build_analysis_data, replicates
from polyculture.wvs.distribution import (
    METRICS,
    distribution_replicates,
    distribution_table,
    js_distance_bernoulli,
    wasserstein_to_binomial,
)
from polyculture.wvs.prompts import cut_at_stops
from polyculture.wvs.regressions import RegressionSpec, regression_stage
from polyculture.wvs.replication import restrict_countries
from polyculture.wvs.speccurve import Defaults, run_speccurve, simulate_study
from polyculture.wvs.specgrid import (
    MIXED_FORMULAS,
    RELEASED_MIXED_FORMULA,
    expand_grid,
    resolve_mixed_formula,
)
from polyculture.wvs.topics import Topic, with_zero_code


@pytest.fixture(scope="module")
def study():
    responses, gt, capability, cl = simulate_study(
        effect=0.8, seed=3, languages=("da", "en"), n_topics=15, responses_per_topic=4
    )
    return build_analysis_data(responses, gt, cl), capability


# --- item 4: named formulas --------------------------------------------------------------------


def test_named_formulas_resolve_and_say_which_the_released_code_fitted():
    assert resolve_mixed_formula("eq1") == ("eq1", MIXED_FORMULAS["eq1"])
    assert "1 +" in MIXED_FORMULAS["eq1"] and "0 +" in MIXED_FORMULAS[RELEASED_MIXED_FORMULA]
    assert RELEASED_MIXED_FORMULA == "released_interaction"
    # a written-out formula equal to a named one takes its name; others are 'custom'
    written = "alignment ~ 0 +  consistency + capability:family:language"
    assert resolve_mixed_formula(written)[0] == "released_normal"
    assert resolve_mixed_formula("alignment ~ capability")[0] == "custom"
    with pytest.raises(ConfigError, match="mixed_model.formula"):
        resolve_mixed_formula("eq2")


def test_eq1_has_a_fixed_intercept_and_the_released_formula_one_slope_per_language(study):
    data, capability = study
    out = {}
    for name in ("eq1", "released_interaction"):
        spec = RegressionSpec(
            "mixed_model", MIXED_FORMULAS[name], "mixedlm", formula_name=name, unit="topic"
        )
        out[name] = regression_stage(
            spec,
            data,
            capability,
            modes=["cluster_bootstrap"],
            rounds=2,
            resample_size=None,
            cluster_rounds=20,
            seed=1,
        )
    eq1 = set(out["eq1"].coefficients["term"])
    rel = set(out["released_interaction"].coefficients["term"])
    assert "Intercept" in eq1 and "consistency" in eq1
    assert (
        "Intercept" not in rel and {"consistency:language[da]", "consistency:language[en]"} <= rel
    )
    # four capability slopes (2 families × 2 languages) in both
    assert sum(t.startswith("capability:") for t in eq1) == 4
    assert sum(t.startswith("capability:") for t in rel) == 4
    assert "released code published the fit of 'released_interaction'" in out["eq1"].summary
    assert out["eq1"].fit["formula_name"] == "eq1"
    assert out["eq1"].fit["released_formula"] == "released_interaction"


def test_speccurve_grid_covers_formulas_and_outcomes():
    grid = {
        "regressions": ["mixed_model", "us_bias"],
        "ground_truth": ["language"],
        "units": ["topic"],
        "observation_units": ["cluster_bootstrap"],
        "resample_sizes": [None],
        "rounds": [10],
        "consistency": [True, False],
        "formulas": ["eq1", "released_interaction", "released_no_consistency"],
        "outcomes": ["spearman", "mae", "wasserstein"],
    }
    specs = expand_grid(grid, 10)
    mixed = [s for s in specs if s.regression == "mixed_model"]
    # spearman: 2 formulas × 2 consistency + the no-consistency formula once; distribution
    # outcomes: 2 outcomes × 2 consistency choices with the first formula
    assert len([s for s in mixed if s.outcome == "spearman"]) == 5
    assert {s.formula for s in mixed} == {"eq1", "released_interaction", "released_no_consistency"}
    dist = [s for s in mixed if s.outcome != "spearman"]
    assert len(dist) == 4 and {s.unit for s in dist} == {"topic"}
    assert {s.observation for s in dist} == {"cluster_bootstrap"}
    assert len([s for s in specs if s.regression == "us_bias"]) == 1 + 2
    with pytest.raises(ConfigError, match="speccurve.outcomes"):
        expand_grid(grid | {"outcomes": ["kl"]}, 10)


def test_speccurve_fits_formulas_and_distribution_outcomes(study):
    data, capability = study
    grid = {
        "regressions": ["mixed_model"],
        "ground_truth": ["language"],
        "units": ["topic"],
        "observation_units": ["cluster_bootstrap"],
        "resample_sizes": [None],
        "rounds": [10],
        "consistency": [True],
        "formulas": ["eq1", "released_interaction"],
        "outcomes": ["spearman", "js_distance"],
    }
    defaults = Defaults(
        mixed_formula="eq1", us_formula="alignment ~ us * model:language", unit="topic"
    )
    table = run_speccurve(data, capability, expand_grid(grid, 20), defaults, seed=4)
    per = table.group_by("formula", "outcome").agg(pl.col("spec_id").n_unique())
    assert set(zip(per["formula"], per["outcome"], strict=True)) == {
        ("eq1", "spearman"),
        ("released_interaction", "spearman"),
        ("eq1", "js_distance"),
    }
    default = table.filter(pl.col("is_default"))
    assert set(default["formula"]) == {"eq1"} and set(default["outcome"]) == {"spearman"}
    # the simulated capability effect shows in the distribution outcome too (1 - JS distance)
    js = table.filter(
        (pl.col("outcome") == "js_distance") & pl.col("term").str.starts_with("capability")
    )
    assert (js["coef"] > 0).mean() >= 0.75


# --- item 8: distribution metrics ---------------------------------------------------------------


def test_distances_match_their_definitions():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.choice([0.0, 0.1, 0.3, 0.5, 0.8, 1.0], size=7)
        p = float(rng.random())
        ref = wasserstein_distance(x, np.arange(11) / 10, v_weights=binom.pmf(np.arange(11), 10, p))
        assert wasserstein_to_binomial(x, p) == pytest.approx(ref, abs=1e-12)
    q = np.array([0.2, 0.0, 1.0, 0.5])
    p = np.array([0.7, 0.5, 1.0, 0.5])
    ref = [jensenshannon([a, 1 - a], [b, 1 - b], base=2) for a, b in zip(q, p, strict=True)]
    assert js_distance_bernoulli(q, p) == pytest.approx(ref, abs=1e-12)


def _two_topic_data(values_a, values_b, gt_a, gt_b):
    rows = [("m", "f", "da", "qa", v) for v in values_a] + [
        ("m", "f", "da", "qb", v) for v in values_b
    ]
    resp = pl.DataFrame(
        {
            "model": [r[0] for r in rows],
            "family": [r[1] for r in rows],
            "language": [r[2] for r in rows],
            "question_key": [r[3] for r in rows],
            "response_id": [str(i) for i in range(len(rows))],
            "pro_score": [r[4] for r in rows],
        }
    )
    gt = pl.DataFrame(
        {
            "level": ["language"] * 2,
            "group": ["da"] * 2,
            "question_key": ["qa", "qb"],
            "polarity": [gt_a, gt_b],
        }
    )
    return build_analysis_data(resp, gt)


def test_distribution_table_hand_case():
    # topic a: model answers 0.2 and 0.4 (mean 0.3) vs 0.5; topic b: 1.0 twice vs 0.9
    data = _two_topic_data([0.2, 0.4], [1.0, 1.0], 0.5, 0.9)
    t = distribution_table(data, rounds=50, seed=1, levels=("language",))
    got = dict(zip(t["metric"], t["value"], strict=True))
    assert got["mae"] == pytest.approx((0.2 + 0.1) / 2)
    js = js_distance_bernoulli(np.array([0.3, 1.0]), np.array([0.5, 0.9]))
    assert got["js_distance"] == pytest.approx(js.mean())
    w = (
        wasserstein_to_binomial(np.array([0.2, 0.4]), 0.5)
        + wasserstein_to_binomial(np.ones(2), 0.9)
    ) / 2
    assert got["wasserstein"] == pytest.approx(w)
    assert (t["ci_low"] <= t["value"]).all() and (t["value"] <= t["ci_high"]).all()
    assert set(t["metric"]) == set(METRICS) and (t["n_topics"] == 2).all()


def test_distribution_replicates_share_the_cluster_topic_draws(study):
    data, _ = study
    rep = replicates(
        data, "cluster", 5, seed=9, units=("topic",), levels=("language",), released_level=None
    )
    dist = distribution_replicates(data, "mae", rounds=5, seed=9, levels=("language",))
    assert dist.select("replicate").unique().height == 6
    # the same draws: replicate b's number of topics equals the cluster replicate's topic count
    a = rep.alignment.filter(pl.col("replicate") == 2).select(
        "model", "language", "group", "n_points"
    )
    b = dist.filter(pl.col("replicate") == 2).select(
        "model", "language", "group", pl.col("alignment")
    )
    assert a.height == b.height and b["alignment"].is_between(0, 1).all()


# --- items 3, 5: countries, low n, stop ---------------------------------------------------------


def test_country_set_restricts_ground_truth_band_and_local_countries():
    gt = pl.DataFrame(
        {
            "level": ["country", "country", "country", "language"],
            "group": ["DK", "US", "JP", "da"],
            "question_key": ["q"] * 4,
            "polarity": [0.1, 0.2, 0.3, 0.4],
        }
    )
    cl = pl.DataFrame({"country": ["DK", "US", "JP"], "language": ["da", "en", "ja"]})
    human = pl.DataFrame({"group": ["DK", "US", "JP"], "consistency": [0.7, 0.8, 0.9]})
    g, c, h = restrict_countries(gt, cl, human, ["DK", "US"])
    assert set(g.filter(pl.col("level") == "country")["group"]) == {"DK", "US"}
    assert g.filter(pl.col("level") == "language").height == 1
    assert set(c["country"]) == {"DK", "US"} and set(h["group"]) == {"DK", "US"}
    with pytest.raises(InputError, match="alignment.countries.*XX"):
        restrict_countries(gt, cl, human, ["DK", "XX"])


def test_low_n_cells_are_flagged_not_dropped():
    data = _two_topic_data([0.2, 0.4, 0.1], [1.0, 1.0, 0.7], 0.5, 0.9)
    t = alignment_table(
        data, scheme="cluster", rounds=5, seed=1, units=("response",), min_responses=7
    )
    assert t.height == 1 and t["low_n"].to_list() == [True] and t["n_responses"][0] == 6
    t = alignment_table(
        data, scheme="cluster", rounds=5, seed=1, units=("response",), min_responses=6
    )
    assert t["low_n"].to_list() == [False]


def test_survey_responses_stop_before_an_eleventh_item():
    text = "1. a\n2. b\n10. j\n11. k\n12. l"
    assert cut_at_stops(text, ["11."]) == "1. a\n2. b\n10. j\n"
    assert cut_at_stops("no stop here", ["11."]) == "no stop here"
    assert cut_at_stops("x STOP y 11. z", ["11.", "STOP"]) == "x "
    assert cut_at_stops("abc", []) == "abc"


# --- item 2: answer code 0 ----------------------------------------------------------------------


def test_zero_code_missing_as_released():
    t = Topic(
        "e233b",
        "E",
        "obey",
        "pro",
        "con",
        10,
        False,
        frozenset({6, 7, 8, 9, 10}),
        frozenset(range(0, 11)),
        ("v",) * 5,
    )
    (valid,) = with_zero_code([t], "valid")
    (missing,) = with_zero_code([t], "missing")
    assert valid.is_valid(0) and not missing.is_valid(0) and missing.is_valid(1)
    assert missing.affirmative == t.affirmative
    with pytest.raises(ConfigError, match="wvs.zero_code"):
        with_zero_code([t], "drop")


# --- item 7: the paper's remaining figures ------------------------------------------------------


def test_residuals_adjusted_alignment_and_breakdown_figures(study, tmp_path):
    from polyculture.wvs.alignment import alignment_table
    from polyculture.wvs.paper_figures import (
        adjusted_alignment,
        plot_adjusted_vs_capability,
        plot_language_breakdown,
        plot_residuals,
    )

    data, capability = study
    spec = RegressionSpec("mixed_model", MIXED_FORMULAS["eq1"], "mixedlm", unit="topic")
    stage = regression_stage(
        spec,
        data,
        capability,
        modes=["replicates", "cluster_bootstrap"],
        rounds=20,
        resample_size=None,
        cluster_rounds=10,
        seed=2,
    )
    obs = stage.observations
    # residual = alignment - fitted on every fitted row
    both = obs.filter(pl.col("residual").is_not_null())
    assert both.height == obs.height
    assert ((both["alignment"] - both["fitted"] - both["residual"]).abs() < 1e-12).all()
    # Eq. 1 has a fixed intercept: the residuals average about 0
    assert abs(both.filter(pl.col("mode") == "cluster_bootstrap")["residual"].mean()) < 0.05
    adj = adjusted_alignment(obs.filter(pl.col("mode") == "replicates"), rounds=10, seed=1)
    assert adj.height == len(data.cells)
    assert (adj["boot_min"] <= adj["boot_max"]).all()
    # with the replicate rows of one cell all sharing one consistency value per language, the
    # adjusted alignment orders cells like their mean alignment within a language
    for name, draw in (
        ("res.png", lambda p: plot_residuals(obs, p, "t")),
        ("adj.png", lambda p: plot_adjusted_vs_capability(adj, capability, p)),
        (
            "da.png",
            lambda p: plot_language_breakdown(
                alignment_table(data, scheme="cluster", rounds=5, seed=1, units=("topic",)),
                "da",
                ["CDA"],
                p,
                unit="topic",
            ),
        ),
        ("empty.png", lambda p: plot_residuals(obs.clear(), p, "t")),
    ):
        draw(tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000


# --- item 6: judge agreement --------------------------------------------------------------------


def test_judge_agreement_hand_case_and_polarity_effect():
    from polyculture.wvs.judge_eval import cohen_kappa, label_agreement, polarity_effect

    def table(labels):
        return pl.DataFrame(
            [(f"r{i // 4}", i % 4, lab) for i, lab in enumerate(labels)],
            schema={"response_id": pl.String, "item_index": pl.Int64, "label": pl.String},
            orient="row",
        )

    ref = table(["pro", "pro", "con", "null", "pro", "con", "con", "con"])
    cand = table(["pro", "con", "con", "null", "pro", "con", "pro", "con"])
    summary, per = label_agreement(ref, cand)
    assert summary["n_matched"] == 8 and summary["agreement"] == pytest.approx(6 / 8)
    # κ by hand: po = .75; pe = (3/8·3/8) + (4/8·4/8) + (1/8·1/8) = 26/64
    assert summary["kappa"] == pytest.approx((0.75 - 26 / 64) / (1 - 26 / 64))
    assert cohen_kappa(np.array(["pro", "con"]), np.array(["pro", "con"])) == 1.0
    pro = per.filter(pl.col("label") == "pro").row(0, named=True)
    assert pro["precision"] == pytest.approx(2 / 3) and pro["recall"] == pytest.approx(2 / 3)
    eff = polarity_effect(ref, cand)
    # r0: 2/3 → 1/3; r1: 1/4 → 2/4
    assert eff["n_responses"] == 2
    assert eff["mean_abs_diff"] == pytest.approx((1 / 3 + 1 / 4) / 2)


def test_released_judge_labels_read_and_their_unit(shared_data):
    from polyculture.wvs.judge_eval import label_agreement, read_label_table, response_polarity

    path = shared_data / "rystrom2025" / "olmo-analysis-responses.jsonl"
    if not path.is_file():
        pytest.skip(f"released judge labels not found at {path}")
    ref = read_label_table(path)
    assert ref["response_id"].n_unique() == 950 and ref.height == 8518
    counts = dict(ref.group_by("label").len().iter_rows())
    assert counts == {"pro": 4818, "con": 3297, "null": 403}
    # one judge call per response: the label lists do not follow the summaries one to one —
    # some responses get more labels than the 10 summaries a survey can have
    per = ref.group_by("response_id").len()
    assert per["len"].max() > 10
    assert response_polarity(ref)["polarity"].null_count() == 12
    # a labelling scored against itself agrees perfectly
    s, _ = label_agreement(ref, ref)
    assert s["agreement"] == 1.0 and s["kappa"] == pytest.approx(1.0)


# --- item 10: defaults name their source --------------------------------------------------------


def test_wvs_and_alignment_defaults_name_their_source(repo_root):
    from polyculture.io import read_yaml

    wvs = read_yaml(repo_root / "schemas/config-wvs.schema.yaml")["properties"]
    assert wvs["sampling"]["default"] == {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 600}
    assert "vllm_batch_responses.py" in wvs["sampling"]["description"]
    assert "names no decoding settings" in wvs["sampling"]["description"]
    assert (
        wvs["stop"]["default"] == ["11."]
        and "vllm_batch_responses.py" in wvs["stop"]["description"]
    )
    assert "process_wvs.py" in wvs["zero_code"]["description"]
    al = read_yaml(repo_root / "schemas/config-alignment.schema.yaml")["properties"]
    assert "project's choice" in al["min_responses"]["description"]
    assert (
        "10 representative citizens"
        in al["distribution"]["properties"]["survey_size"]["description"]
    )
    assert "Eq. 1" in al["mixed_model"]["properties"]["formula"]["description"]
    preset = (repo_root / "configs/paper-wvs.yaml").read_text(encoding="utf-8")
    assert "the paper's values" not in preset and "released code's" in preset
