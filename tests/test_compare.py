"""polyculture.compare on small hand-made score tables whose results can be worked out by hand."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from polyculture import compare as cmp
from polyculture.errors import InputError

N_BOOT = 999


def per_question(
    model: str, country: str, language: str, prompt: str, matches, weights=None, valid=None
):
    n = len(matches)
    weights = weights if weights is not None else [float(m) for m in matches]
    valid = valid if valid is not None else [True] * n
    return pl.DataFrame(
        {
            "model": [model] * n,
            "ID": [f"q{i:02d}" for i in range(n)],
            "country": [country] * n,
            "language": [language] * n,
            "prompt_id": [prompt] * n,
            "valid": valid,
            "match": [m if v else None for m, v in zip(matches, valid, strict=True)],
            "weight": [w if v else None for w, v in zip(weights, valid, strict=True)],
        },
        schema_overrides={"match": pl.Int8, "weight": pl.Float64},
    )


@pytest.fixture
def scores() -> pl.DataFrame:
    # 10 questions; base matches q0-q3 under both templates; the adapter also matches q4-q9
    # under inst-4 and q4-q5 under pers-3 (Greek); in English both models match q0-q4.
    base = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    ad_i4 = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    ad_p3 = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    en = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    frames = []
    for model, i4, p3 in (("base", base, base), ("full", ad_i4, ad_p3)):
        frames.append(per_question(model, "Greece", "el", "inst-4", i4))
        frames.append(per_question(model, "Greece", "el", "pers-3", p3))
        frames.append(
            per_question(model, "Greece", "en", "inst-4", en, weights=[0.5 * m for m in en])
        )
        frames.append(
            per_question(model, "Greece", "en", "pers-3", en, weights=[0.5 * m for m in en])
        )
        frames.append(per_question(model, "US", "en", "inst-4", en, valid=[True] * 8 + [False] * 2))
        frames.append(per_question(model, "US", "en", "pers-3", en, valid=[True] * 8 + [False] * 2))
    return pl.concat(frames)


def test_pair_models_finds_the_base_of_each_adapter() -> None:
    models = [
        {"name": "base", "model": "m"},
        {"name": "full", "model": "m", "adapter": "full"},
        {"name": "rand", "model": "m", "adapter": "random_selection"},
        {"name": "orphan", "model": "other", "adapter": "full"},
    ]
    pairs, notes = cmp.pair_models(models)
    assert pairs == [cmp.Pair("full", "base", "full"), cmp.Pair("rand", "base", "random_selection")]
    assert len(notes) == 1 and "orphan" in notes[0] and "other" in notes[0]


def test_blend_scores_average_templates_and_pool_countries(scores: pl.DataFrame) -> None:
    q = cmp.blend_question_scores(scores)
    s = cmp.blend_scores(q)

    def get(model, country, language, prompt):
        row = s.filter(
            (pl.col("model") == model)
            & (pl.col("country") == country)
            & (pl.col("language") == language)
            & (pl.col("prompt_id") == prompt)
        )
        assert row.height == 1
        return row.row(0, named=True)

    assert get("full", "Greece", "el", "inst-4")["sem_b"] == 100.0
    assert get("full", "Greece", "el", "pers-3")["sem_b"] == 60.0
    assert get("full", "Greece", "el", "all")["sem_b"] == pytest.approx(80.0)
    assert get("base", "Greece", "el", "all")["sem_b"] == pytest.approx(40.0)
    assert get("base", "Greece", "en", "all")["sem_w"] == pytest.approx(25.0)
    # US: 8 valid questions, 5 matched
    assert get("base", "US", "en", "all")["n_valid"] == 8
    assert get("base", "US", "en", "all")["sem_b"] == pytest.approx(62.5)
    # All countries in English: Greece 5 of 10, US 5 of 8. Headline: the macro mean of the
    # per-country scores (50 + 62.5) / 2; beside it the pooled 10 of 18
    macro = get("base", "All", "en", "all")
    assert (macro["n_valid"], macro["sem_b"]) == (18, pytest.approx((50 + 62.5) / 2))
    assert macro["sem_w"] == pytest.approx((25 + 62.5) / 2)
    pooled = get("base", "All (pooled)", "en", "all")
    assert (pooled["n_valid"], pooled["sem_b"]) == (18, pytest.approx(100 * 10 / 18))
    assert pooled["sem_w"] == pytest.approx(100 * (2.5 + 5) / 18)
    assert get("full", "All", "local", "all")["sem_b"] == pytest.approx(80.0)
    assert get("full", "All", "local", "all")["language_kind"] == "local"


def test_compare_blend_by_hand(scores: pl.DataFrame) -> None:
    q = cmp.blend_question_scores(scores)
    out = cmp.compare_blend(
        q, [cmp.Pair("full", "base", "full")], n_boot=N_BOOT, seed=3, alpha=0.05
    )
    assert set(out.columns) == set(cmp.BLEND_COMPARISON_SCHEMA)

    def get(country, language, prompt):
        return out.filter(
            (pl.col("country") == country)
            & (pl.col("language") == language)
            & (pl.col("prompt_id") == prompt)
        ).row(0, named=True)

    # inst-4 in Greek: the adapter wins 6 questions and loses none; a resample's difference is
    # 100 × (wins among 10 draws)/10 and strays from 60 by 60 or more only when it draws no win
    # (0.4^10 ≈ 1e-4) or only wins (0.6^10 ≈ 0.006): p ≈ 0.006, significant.
    r = get("Greece", "el", "inst-4")
    assert (r["sem_b_base"], r["sem_b"], r["delta_sem_b"]) == (40.0, 100.0, 60.0)
    assert r["p_sem_b"] < 0.05 and r["significant_sem_b"]
    assert r["ci_low_sem_b"] <= 60.0 <= r["ci_high_sem_b"]
    # English: identical answers: Δ = 0, p = 1
    r = get("Greece", "en", "all")
    assert (r["delta_sem_b"], r["p_sem_b"], r["significant_sem_b"]) == (0.0, 1.0, False)
    assert r["delta_sem_w"] == 0.0
    # mean over templates: Δ = (60 + 20) / 2
    assert get("Greece", "el", "all")["delta_sem_b"] == pytest.approx(40.0)
    assert get("All", "local", "all")["delta_sem_b"] == pytest.approx(40.0)
    assert get("All (pooled)", "local", "all")["delta_sem_b"] == pytest.approx(40.0)
    # English: identical, so the macro and pooled summaries show no difference either
    assert get("All", "en", "all")["p_sem_b"] == 1.0
    assert get("All", "en", "all")["sem_b"] == pytest.approx((50 + 62.5) / 2)
    assert get("All (pooled)", "en", "all")["sem_b"] == pytest.approx(100 * 10 / 18)
    assert get("US", "en", "all")["n_valid"] == 8
    again = cmp.compare_blend(
        q, [cmp.Pair("full", "base", "full")], n_boot=N_BOOT, seed=3, alpha=0.05
    )
    assert again.equals(out)


def test_compare_blend_needs_the_same_questions(scores: pl.DataFrame) -> None:
    q = cmp.blend_question_scores(scores)
    q = q.filter(
        ~((pl.col("model") == "base") & (pl.col("ID") == "q03") & (pl.col("country") == "US"))
    )
    with pytest.raises(InputError, match="different items"):
        cmp.compare_blend(q, [cmp.Pair("full", "base", "full")], n_boot=10, seed=0, alpha=0.05)
    with pytest.raises(InputError, match="no scores of model nobody"):
        cmp.compare_blend(q, [cmp.Pair("nobody", "base", "x")], n_boot=10, seed=0, alpha=0.05)


def test_blend_question_scores_needs_every_template(scores: pl.DataFrame) -> None:
    bad = scores.filter(
        ~((pl.col("prompt_id") == "pers-3") & (pl.col("ID") == "q01") & (pl.col("model") == "full"))
    )
    with pytest.raises(
        InputError, match=r"question q01 \(full, .*\) is scored under 1 of 2 prompt templates"
    ):
        cmp.blend_question_scores(bad)


def items_table(model: str, task: str, bench: str, language: str, metric: str, values, hashes=None):
    n = len(values)
    return pl.DataFrame(
        {
            "model": [model] * n,
            "task": [task] * n,
            "subtask": [task] * n,
            "benchmark": [bench] * n,
            "language": [language] * n,
            "doc_id": list(range(n)),
            "doc_hash": hashes or [f"h{i}" for i in range(n)],
            "metric": [metric] * n,
            "value": [float(v) for v in values],
        }
    )


@pytest.fixture
def items() -> pl.DataFrame:
    return pl.concat(
        [
            items_table("base", "hs_en", "hellaswag", "en", "acc_norm", [1, 0, 0, 0]),
            items_table("base", "hs_en", "hellaswag", "en", "acc", [0, 0, 0, 0]),
            items_table("base", "hs_el", "hellaswag", "el", "acc_norm", [0, 0, 1, 1]),
            items_table("base", "mmlu_en", "global_mmlu", "en", "acc", [1, 1, 0, 0]),
            items_table("full", "hs_en", "hellaswag", "en", "acc_norm", [1, 1, 0, 0]),
            items_table("full", "hs_en", "hellaswag", "en", "acc", [1, 1, 1, 1]),
            items_table("full", "hs_el", "hellaswag", "el", "acc_norm", [0, 0, 1, 1]),
            items_table("full", "mmlu_en", "global_mmlu", "en", "acc", [1, 1, 0, 0]),
        ]
    )


METRICS = {"hs_en": "acc_norm", "hs_el": "acc_norm", "mmlu_en": "acc"}


def test_general_scores_and_comparison(items: pl.DataFrame) -> None:
    chosen = cmp.compared_items(items, METRICS)
    assert set(chosen["metric"].to_list()) == {"acc_norm", "acc"}
    assert chosen.filter(pl.col("task") == "hs_en")["metric"].unique().to_list() == ["acc_norm"]
    sc = cmp.general_scores(chosen)
    row = sc.filter(
        (pl.col("model") == "full")
        & (pl.col("benchmark") == "hellaswag")
        & (pl.col("task") == "all")
    )
    assert (
        row["value"][0] == pytest.approx(4 / 8) and row["n"][0] == 8 and row["language"][0] == "all"
    )
    out = cmp.compare_general(
        chosen, [cmp.Pair("full", "base", "full")], n_boot=N_BOOT, seed=1, alpha=0.05
    )
    hs_en = out.filter(pl.col("task") == "hs_en").row(0, named=True)
    assert (hs_en["value_base"], hs_en["value"], hs_en["delta"]) == (0.25, 0.5, 0.25)
    # one win in four items: a resample differs from 0.25 by 0.25 or more unless it draws the
    # win exactly once; P(exactly one of four draws is the win) = 4 · 1/4 · (3/4)^3 ≈ 0.42
    assert hs_en["p_value"] == pytest.approx(1 - 4 * 0.25 * 0.75**3, abs=0.05)
    pooled = out.filter(
        (pl.col("benchmark") == "hellaswag") & (pl.col("task") == "all (pooled)")
    ).row(0, named=True)
    assert pooled["n"] == 8 and pooled["delta"] == pytest.approx(0.125)
    # macro over the two HellaSwag languages: (0.25 + 0) / 2 with a stratified bootstrap
    macro = out.filter((pl.col("benchmark") == "hellaswag") & (pl.col("task") == "all")).row(
        0, named=True
    )
    assert macro["delta"] == pytest.approx(0.125)
    assert (macro["value_base"], macro["value"]) == (pytest.approx(0.375), pytest.approx(0.5))
    mmlu = out.filter(pl.col("task") == "mmlu_en").row(0, named=True)
    assert (mmlu["delta"], mmlu["p_value"], mmlu["significant"]) == (0.0, 1.0, False)


def test_macro_and_pooled_means_differ_when_the_strata_differ_in_size() -> None:
    """Benchmarks: 'all' is the mean of the per-language values, 'all (pooled)' the item mean."""
    rows = []
    for task, lang, values in (("t_en", "en", [1, 1, 1, 1, 1, 1, 1, 1]), ("t_el", "el", [0, 0])):
        for v in values:
            rows.append(
                {
                    "model": "m",
                    "benchmark": "b",
                    "task": task,
                    "language": lang,
                    "metric": "acc",
                    "value": float(v),
                }
            )
    sc = cmp.general_scores(pl.DataFrame(rows))
    by_task = {r["task"]: r["value"] for r in sc.iter_rows(named=True)}
    assert by_task["all"] == pytest.approx(0.5) and by_task["all (pooled)"] == pytest.approx(0.8)


def test_stratified_bootstrap_resamples_within_strata() -> None:
    """Stratum A: the adapter wins every question (no variance within A); stratum B: no
    difference. Every resample's macro delta is exactly (1 + 0) / 2: a zero-width interval and
    the smallest p-value. A plain bootstrap over the pooled items would vary with the mix."""
    a = [1.0] * 5 + [0.0] * 20
    b = [0.0] * 5 + [0.0] * 20
    strata = ["A"] * 5 + ["B"] * 20
    r = cmp.stratified_paired_bootstrap(a, b, strata, 499, 0, 0.05)
    assert r.delta == pytest.approx(0.5) and r.low == r.high == pytest.approx(0.5)
    assert r.p_value == pytest.approx(1 / 500)
    # the same seed gives the same draws; the order of the strata does not matter
    again = cmp.stratified_paired_bootstrap(a[::-1], b[::-1], strata[::-1], 499, 0, 0.05)
    assert again.delta == r.delta
    # with variance inside a stratum the interval has width and covers the delta
    c = [1.0, 0.0] * 10
    d = [0.0] * 20
    r2 = cmp.stratified_paired_bootstrap(c, d, ["A"] * 10 + ["B"] * 10, 999, 1, 0.05)
    assert r2.low < r2.delta < r2.high
    with pytest.raises(ValueError):
        cmp.stratified_paired_bootstrap([1.0], [1.0, 0.0], ["A"], 10, 0, 0.05)


def test_general_comparison_checks_documents(items: pl.DataFrame) -> None:
    swapped = items.with_columns(
        doc_hash=pl.when((pl.col("model") == "full") & (pl.col("doc_id") == 2))
        .then(pl.lit("other"))
        .otherwise("doc_hash")
    )
    with pytest.raises(InputError, match="different documents"):
        cmp.compare_general(
            cmp.compared_items(swapped, METRICS),
            [cmp.Pair("full", "base", "full")],
            n_boot=10,
            seed=0,
            alpha=0.05,
        )


def test_ablation_markdown_and_figures(
    scores: pl.DataFrame, items: pl.DataFrame, tmp_path: Path
) -> None:
    q = cmp.blend_question_scores(scores)
    pairs = [cmp.Pair("full", "base", "full")]
    b_sc, b_cmp = (
        cmp.blend_scores(q),
        cmp.compare_blend(q, pairs, n_boot=N_BOOT, seed=0, alpha=0.05),
    )
    chosen = cmp.compared_items(items, METRICS)
    g_sc, g_cmp = (
        cmp.general_scores(chosen),
        cmp.compare_general(chosen, pairs, n_boot=N_BOOT, seed=0, alpha=0.05),
    )
    abl = cmp.ablation_table(
        b_cmp, g_cmp, b_sc, g_sc, pairs, ["full", "random_selection", "no_region_filter"]
    )
    assert abl["variant"].to_list() == ["base", "full"]
    base, full = abl.row(0, named=True), abl.row(1, named=True)
    assert base["sem_b_local"] == pytest.approx(40.0) and base["delta_sem_b_local"] is None
    assert full["sem_b_local"] == pytest.approx(80.0) and full[
        "delta_sem_b_local"
    ] == pytest.approx(40.0)
    assert full["delta_sem_b_English"] == 0.0 and full["p_sem_b_English"] == 1.0
    assert full["delta_hellaswag"] == pytest.approx(0.125) and full["delta_global_mmlu"] == 0.0

    md = cmp.markdown_report(
        b_sc, b_cmp, g_sc, g_cmp, abl, alpha=0.05, n_boot=N_BOOT, notes=["a note"]
    )
    assert "## BLEnD: adapter vs base" in md and "## Ablation" in md and "> a note" in md
    assert "| Greece | el | 10 | 40.00 | 80.00 |" in md
    assert "+40.00 [" in md and " *" in md  # the significant Greek difference is marked
    assert "Published figures" not in md
    published = {
        "source": "the paper, Table 1",
        "variant": "full",
        "blend_delta_sem_b": {"English": 5.03, "local": 1.0},
        "blend_sem_b": {"local": {"Greece": 70.0}},
        "benchmark_delta": {"hellaswag": -0.85},
    }
    md = cmp.markdown_report(
        b_sc, b_cmp, g_sc, g_cmp, abl, alpha=0.05, n_boot=N_BOOT, published=published
    )
    assert "## Published figures beside this run" in md and "the paper, Table 1" in md
    # this run's macro ΔSEM-B: English 0, local +40 (one country); HellaSwag macro Δ 0.125 → +12.5
    assert "| ΔSEM-B, questions in English, mean over regions | +5.03 | +0.00 | 1.000 |" in md
    assert "| ΔSEM-B, questions in local, mean over regions | +1.00 | +40.00 |" in md
    assert "| SEM-B Greece, local | 70.00 | 80.00 | – |" in md
    assert "| Δ hellaswag, mean over languages | -0.85 | +12.50 |" in md

    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for p in paths:
        cmp.plot_blend(b_sc, b_cmp, str(p), alpha=0.05)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[0].read_bytes() == paths[1].read_bytes()  # deterministic figures
    cmp.plot_general(g_sc, g_cmp, str(tmp_path / "g.png"), alpha=0.05)
    assert (tmp_path / "g.png").stat().st_size > 1000

    none = cmp.ablation_table(b_cmp, g_cmp, b_sc, g_sc, [], ["full"])
    assert none.height == 0
    assert "No adapter" in cmp.markdown_report(
        b_sc, b_cmp.clear(), g_sc, g_cmp.clear(), none, alpha=0.05, n_boot=10
    )


def test_culturally_sensitive_and_agnostic_items_are_reported_apart() -> None:
    """Global MMLU's CS and CA items: the adapter gains on CS items only."""
    rows = []
    for model, cs_values in (("base", [0, 0]), ("full", [1, 1])):
        for task, lang in (("mmlu_en", "en"), ("mmlu_el", "el")):
            for i, (label, v) in enumerate(
                [("CS", cs_values[0]), ("CS", cs_values[1]), ("CA", 1), ("CA", 0)]
            ):
                rows.append(
                    {
                        "model": model,
                        "task": task,
                        "subtask": task,
                        "benchmark": "global_mmlu",
                        "language": lang,
                        "doc_id": i,
                        "doc_hash": f"{task}{i}",
                        "cultural_label": label,
                        "metric": "acc",
                        "value": float(v),
                    }
                )
    chosen = cmp.compared_items(pl.DataFrame(rows), {"mmlu_en": "acc", "mmlu_el": "acc"})
    sc = cmp.general_scores(chosen)
    value = {(r["model"], r["task"]): r["value"] for r in sc.iter_rows(named=True)}
    assert value[("base", "all (CS)")] == 0.0 and value[("full", "all (CS)")] == 1.0
    assert value[("base", "all (CA)")] == value[("full", "all (CA)")] == 0.5
    out = cmp.compare_general(
        chosen, [cmp.Pair("full", "base", "full")], n_boot=N_BOOT, seed=0, alpha=0.05
    )
    delta = {r["task"]: r["delta"] for r in out.iter_rows(named=True)}
    assert delta["all (CS)"] == 1.0 and delta["all (CA)"] == 0.0 and delta["all"] == 0.5
    assert out.filter(pl.col("task") == "all (CS)")["n"][0] == 4
