"""The replication preset (configs/replicate-rystrom2025.yaml) end to end on the released data in
../shared/data/rystrom2025: one Snakemake run of stages 7-10 in a temporary copy of the workflow
(session-scoped), then checks of its outputs against the released analysis."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import copy_workflow, run_snakemake

from polyculture.io import read_yaml

pytestmark = [pytest.mark.reference, pytest.mark.workflow]

PRESET = "configs/replicate-rystrom2025.yaml"
SHARED_PREFIX = "../shared/data/rystrom2025"
FAMILIES = ("gemma", "olmo", "openai")
LANGUAGES = ("da", "en", "nl", "pt")
MODELS = (
    "OLMo-2-0325-32B-Instruct",
    "OLMo-2-1124-13B-Instruct",
    "OLMo-2-1124-7B-Instruct",
    "gemma-2-27b-it",
    "gemma-2-2b-it",
    "gemma-2-9b-it",
    "gpt-3.5-turbo-0125",
    "gpt-4-turbo-2024-04-09",
    "gpt-4o",
)
TARGETS = (
    "alignment.parquet",
    "country_correlations.parquet",
    "self_consistency.parquet",
    "drops.parquet",
    "figures/country_correlations.png",
    "figures/self_consistency.png",
    "figures/alignment_vs_capability.png",
    "mixed_model_coefficients.parquet",
    "mixed_model_summary.txt",
    "mixed_model_observations.parquet",
    "mixed_model_fit.json",
    "figures/mixed_model_coefficients.png",
    "us_bias_coefficients.parquet",
    "us_bias_summary.txt",
    "us_bias_observations.parquet",
    "us_bias_fit.json",
    "figures/us_bias_coefficients.png",
    "speccurve.parquet",
    "speccurve_summary.parquet",
    "speccurve_summary.tsv",
    "figures/speccurve",
    "distribution.parquet",
    "distribution.tsv",
    "replication.parquet",
    "replication.tsv",
    "replication_summary.tsv",
    "adjusted_alignment.parquet",
    "figures/adjusted_alignment_vs_capability.png",
    "figures/mixed_model_residuals.png",
    "figures/us_bias_residuals.png",
    "figures/language_breakdown",
)


def _point_at(node, data: Path):
    """The preset with its ../shared/data/rystrom2025 paths pointing at `data` (the copy of the
    workflow does not sit beside ../shared)."""
    if isinstance(node, dict):
        return {k: _point_at(v, data) for k, v in node.items()}
    if isinstance(node, list):
        return [_point_at(v, data) for v in node]
    if isinstance(node, str) and node.startswith(SHARED_PREFIX):
        return str(data) + node[len(SHARED_PREFIX) :]
    return node


@pytest.fixture(scope="session")
def replication(
    shared_data: Path, repo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    data = shared_data / "rystrom2025"
    if not (data / "all_lang_model_responses_with_scores.csv").is_file():
        pytest.skip(f"released responses not found in {data}")
    work = copy_workflow(tmp_path_factory.mktemp("replication"))
    if not (work / "envs").exists():  # rules name conda envs; Snakemake records them per job
        shutil.copytree(repo_root / "envs", work / "envs")
    cfg = _point_at(read_yaml(work / PRESET), data)
    cfg_path = work / "replicate.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    out = Path(cfg["results"]) / "alignment"
    run_snakemake(
        work, *(str(out / t) for t in TARGETS), "--configfile", str(cfg_path), timeout=3600
    )
    return work / out


def test_preset_does_not_run_any_model(repo_root: Path):
    cfg = read_yaml(repo_root / PRESET)
    assert cfg["eval_models"] == []
    assert not any(cfg["pipelines"][g] for g in ("consensus", "train", "evaluate", "wvs"))
    assert cfg["pipelines"]["alignment"]


def test_inputs_read_every_released_response(replication: Path):
    drops = pl.read_parquet(replication / "drops.parquet")
    assert drops["total"].max() == 9148 and drops["dropped"].sum() == 0
    cells = pl.read_parquet(replication / "inputs/cells.parquet")
    assert cells.height == 36 and cells["n_responses"].sum() == 9148


def test_mixed_model_converges_in_both_modes(replication: Path):
    fit = json.loads((replication / "mixed_model_fit.json").read_text())
    assert fit["estimable"]
    rep, clu = fit["modes"]["replicates"], fit["modes"]["cluster_bootstrap"]
    assert rep["converged"] and clu["converged"]
    assert rep["n_obs"] == 100 * 36 and rep["n_groups"] == 9  # as released: 3,600 rows
    assert clu["n_obs"] == 36 and clu["n_groups"] == 9
    assert clu["n_boot_failed"] < 0.05 * clu["rounds"]
    summary = (replication / "mixed_model_summary.txt").read_text()
    assert (
        "treated as independent observations" in summary
        and "cluster-bootstrap replicates" in summary
    )


def test_mixed_model_has_every_family_language_term(replication: Path):
    coefs = pl.read_parquet(replication / "mixed_model_coefficients.parquet")
    assert coefs.columns[:8] == ["term", "coef", "std_err", "z", "p", "ci_low", "ci_high", "mode"]
    for mode in ("replicates", "cluster_bootstrap"):
        cap = coefs.filter((pl.col("mode") == mode) & pl.col("term").str.starts_with("capability:"))
        assert sorted(zip(cap["family"], cap["language"], strict=True)) == [
            (f, lang) for f in FAMILIES for lang in LANGUAGES
        ]
        assert cap["coef"].is_finite().all() and cap["ci_low"].le(cap["ci_high"]).all()
    # as in the released regression tables, Gemma's capability slopes are positive and
    # significant in every language when bootstrap replicates count as observations ...
    gemma = coefs.filter((pl.col("mode") == "replicates") & (pl.col("family") == "gemma"))
    assert (gemma["coef"] > 0).all() and (gemma["p"] < 0.05).all()
    # ... and the replicate unit calls more terms significant than the cluster bootstrap
    share = coefs.group_by("mode").agg((pl.col("p") < 0.05).mean().alias("s"))
    s = dict(zip(share["mode"], share["s"], strict=True))
    assert s["replicates"] > s["cluster_bootstrap"]


def test_us_bias_has_every_model_language_term(replication: Path):
    coefs = pl.read_parquet(replication / "us_bias_coefficients.parquet")
    for mode in ("replicates", "cluster_bootstrap"):
        us = coefs.filter(
            (pl.col("mode") == mode) & pl.col("term").str.starts_with("us[T.True]:model")
        )
        assert sorted(zip(us["model"], us["language"], strict=True)) == [
            (m, lang) for m in MODELS for lang in LANGUAGES
        ]
        # English answers align more with the US than with the other English-speaking countries
        # for every model (the released table's us × model × en terms are all positive)
        assert (us.filter(pl.col("language") == "en")["coef"] > 0).all()
    fit = json.loads((replication / "us_bias_fit.json").read_text())
    # 10 models (with the uniform-random reference) × 16 language-country rows, per replicate
    assert (
        fit["modes"]["replicates"]["n_obs"] == 100 * 10 * 16
        and fit["modes"]["cluster_bootstrap"]["n_obs"] == 160
    )


def test_alignment_table_covers_every_cell_level_and_unit(replication: Path):
    al = pl.read_parquet(replication / "alignment.parquet")
    native = al.filter((pl.col("level") == "language") & (pl.col("group") == pl.col("language")))
    assert native.height == 36 * 2
    assert (native["alignment"] > 0).all()
    assert (native["ci_low"] <= native["alignment"]).all() and (
        native["alignment"] <= native["ci_high"]
    ).all()
    assert set(al["level"]) == {"country", "language", "global", "merged"}
    assert al.filter(pl.col("level") == "country")["group"].n_unique() == 13


def test_models_are_less_self_consistent_than_people(replication: Path):
    sc = pl.read_parquet(replication / "self_consistency.parquet")
    assert sc.height == 36
    # the released pairing (self-pairs) inflates every cell
    assert (sc["consistency_released"] > sc["consistency"]).all()
    # the paper's Fig. 3: below the resampled WVS band (0.66-0.84)
    human = pl.read_parquet(replication / "inputs/human_consistency.parquet")
    assert human["consistency"].min() == pytest.approx(0.665, abs=0.001)
    assert (sc["consistency"] < human["consistency"].min()).mean() >= 0.9


def test_speccurve_table_and_figures(replication: Path):
    table = pl.read_parquet(replication / "speccurve.parquet")
    assert table.select("regression", "spec_id", "term").is_duplicated().sum() == 0
    n_specs = table.group_by("regression").agg(pl.col("spec_id").n_unique())
    # mixed: 2 formulas × 2 ground truths × 2 units × 2 observation units × 2 consistency
    # choices, plus 3 distribution outcomes × 2 ground truths × 2 consistency choices; US bias:
    # 2 units × 2 observation units + 3 outcomes
    assert dict(zip(n_specs["regression"], n_specs["spec_id"], strict=True)) == {
        "mixed_model": 32 + 12,
        "us_bias": 4 + 3,
    }
    per_spec = table.group_by("regression", "spec_id").agg(pl.len().alias("n"))
    # one row per specification × term: released_interaction 16 terms (4 consistency slopes)
    # or 12 without consistency; eq1 14 (intercept, consistency) or 13
    assert set(per_spec.filter(pl.col("regression") == "mixed_model")["n"]) == {12, 13, 14, 16}
    assert set(table["formula"]) == {"released_interaction", "eq1", "us_bias"}
    assert set(table["outcome"]) == {"spearman", "mae", "js_distance", "wasserstein"}
    summary = pl.read_parquet(replication / "speccurve_summary.parquet")
    for col in (
        "share_same_sign",
        "share_significant",
        "share_significant_replicates",
        "share_significant_cluster",
    ):
        assert summary[col].drop_nulls().is_between(0, 1).all()
    figures = sorted((replication / "figures/speccurve").glob("*.png"))
    assert len(figures) == 12 + 36


def test_replication_report_puts_published_terms_beside_every_variant(replication: Path):
    report = pl.read_parquet(replication / "replication.parquet")
    published = pl.read_csv(
        Path(__file__).parents[1] / "resources/alignment/published_rystrom2025.csv"
    )
    assert published.height == 96
    rule = report.filter(pl.col("variant").str.starts_with("mixed_model rule"))
    # the rules' released-formula fits have every published mixed-model term (16) in both modes
    assert rule.group_by("variant").agg(pl.col("found").sum())["found"].to_list() == [16, 16]
    us_rule = report.filter(pl.col("variant").str.starts_with("us_bias rule"))
    assert us_rule.group_by("variant").agg(pl.col("found").all())["found"].all()
    # as released (replicate rows): every Gemma capability slope has the published sign
    rel = rule.filter(
        pl.col("variant").str.contains("observation=replicates")
        & pl.col("term").str.starts_with("capability:family[gemma]")
    )
    assert rel.height == 4 and rel["same_sign"].all()
    summary = pl.read_csv(replication / "replication_summary.tsv", separator="\t")
    assert summary["share_same_sign"].drop_nulls().is_between(0, 1).all()
    assert summary.filter(pl.col("variant").str.starts_with("speccurve")).height == 44 + 7


def test_distribution_metrics_and_low_n_flags(replication: Path):
    dist = pl.read_parquet(replication / "distribution.parquet")
    native = dist.filter((pl.col("level") == "language") & (pl.col("group") == pl.col("language")))
    assert native.height == 36 * 3
    assert native["value"].is_between(0, 1).all()
    assert (native["ci_low"] <= native["value"]).all() and (
        native["value"] <= native["ci_high"]
    ).all()
    al = pl.read_parquet(replication / "alignment.parquet")
    low = al.filter("low_n").select("model", "language").unique()
    assert low.rows() == [("gemma-2-2b-it", "da")]  # 38 of 300 responses kept


def test_mixed_model_says_which_formula_the_released_code_fitted(replication: Path):
    fit = json.loads((replication / "mixed_model_fit.json").read_text())
    assert fit["formula_name"] == "released_interaction" == fit["released_formula"]
    summary = (replication / "mixed_model_summary.txt").read_text()
    assert "The released code published the fit of 'released_interaction'" in summary


def test_paper_figures_and_adjusted_alignment(replication: Path):
    adj = pl.read_parquet(replication / "adjusted_alignment.parquet")
    assert adj.height == 36 and adj["adjusted"].is_not_null().all()
    assert (adj["boot_min"] <= adj["adjusted"]).mean() > 0.9
    assert sorted(p.name for p in (replication / "figures/language_breakdown").glob("*.png")) == [
        f"{lang}.png" for lang in LANGUAGES
    ]
    obs = pl.read_parquet(replication / "mixed_model_observations.parquet")
    assert obs.filter(pl.col("mode") == "replicates")["residual"].is_not_null().all()
