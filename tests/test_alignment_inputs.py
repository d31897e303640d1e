"""Inputs of the alignment stages: released and workflow tables, capability, and bad inputs
(each fails naming the file, row or column, or is dropped and counted)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from polyculture.errors import InputError
from polyculture.wvs.alignment import check_ground_truth, check_responses
from polyculture.wvs.replication import (
    capability_from_general_eval,
    capability_table,
    language_code,
    prepare_inputs,
    read_capability_table,
    read_human_consistency,
    read_released_country_languages,
    read_released_ground_truth,
    read_released_responses,
    responses_from_scored,
)

REPO = Path(__file__).resolve().parents[1]


def released_table(**overrides) -> pl.DataFrame:
    base = {
        "model_name": ["m1", "m1", "m1", "m1", "m2"],
        "model_family": ["f", "f", "f", "f", "g"],
        "template_type": ["survey_hypothetical"] * 4 + ["other"],
        "language": ["da", "da", "da", "da", "da"],
        "response_language": ["da", "da", "en", "da", "da"],
        "question_key": ["F121", "f120", "f121", "d054", "d054"],
        "response_pro_score": [0.7, 1.0, 0.2, None, 0.5],
        "ground_truth_pro_score": [0.87, 0.84, 0.87, 0.37, 0.37],
    }
    base.update(overrides)
    return pl.DataFrame(base)


def test_released_responses_are_filtered_counted_and_carry_merged_truth(tmp_path):
    path = tmp_path / "responses.csv"
    released_table().write_csv(path)
    responses, merged, drops = read_released_responses(path)
    assert responses.columns == [
        "model",
        "family",
        "language",
        "question_key",
        "response_id",
        "pro_score",
    ]
    assert responses["question_key"].to_list() == ["f121", "f120"]  # lower-cased, as released
    reasons = dict(zip(drops.to_frame()["reason"], drops.to_frame()["dropped"], strict=True))
    assert reasons == {
        "other template type": 1,
        "response not in the prompt language": 1,
        "no pro or con summary": 1,
    }
    assert drops.total == 5
    assert set(merged["level"]) == {"merged"}
    assert merged.filter(pl.col("question_key") == "f121")["polarity"].to_list() == [0.87]


def test_released_responses_with_wrong_columns_fail_naming_file_and_columns(tmp_path):
    path = tmp_path / "bad.csv"
    released_table().rename({"response_pro_score": "score"}).write_csv(path)
    with pytest.raises(InputError, match=r"bad\.csv.*missing column\(s\) 'response_pro_score'"):
        read_released_responses(path)


def test_polarity_outside_unit_interval_names_the_row(tmp_path):
    path = tmp_path / "r.csv"
    released_table(response_pro_score=[0.7, 1.4, 0.2, 0.3, 0.5]).write_csv(path)
    with pytest.raises(InputError, match=r"row 1: pro_score 1\.4 is outside \[0, 1\]"):
        read_released_responses(path)


def test_duplicate_response_ids_and_two_families_fail():
    df = pl.DataFrame(
        {
            "model": ["m", "m"],
            "family": ["f", "f"],
            "language": ["da", "da"],
            "question_key": ["a", "b"],
            "response_id": ["x", "x"],
            "pro_score": [0.1, 0.2],
        }
    )
    with pytest.raises(InputError, match="response_id 'x' occurs more than once"):
        check_responses(df, "t")
    with pytest.raises(InputError, match="model 'm' has more than one family"):
        check_responses(
            df.with_columns(pl.Series("family", ["f", "g"]), pl.Series("response_id", ["1", "2"])),
            "t",
        )


def test_ground_truth_checks():
    gt = pl.DataFrame(
        {
            "level": ["country", "country"],
            "group": ["DK", "DK"],
            "question_key": ["A", "a"],
            "polarity": [0.1, 0.2],
        }
    )
    with pytest.raises(
        InputError, match="two polarities for level 'country', group 'DK', topic 'a'"
    ):
        check_ground_truth(gt, "gt")
    with pytest.raises(InputError, match="unknown level 'region'"):
        check_ground_truth(
            gt.with_columns(pl.lit("region").alias("level"), pl.Series("question_key", ["a", "b"])),
            "gt",
        )


def test_released_ground_truth_files(tmp_path):
    pl.DataFrame(
        {
            "cntry_an": ["DK", "US"],
            "question_key": ["F121", "F121"],
            "pro_score": [0.9, 0.4],
            "lnge_iso": ["da", "en"],
        }
    ).write_csv(tmp_path / "c.csv")
    pl.DataFrame({"lnge_iso": ["da"], "question_key": ["F121"], "pro_score": [0.88]}).write_csv(
        tmp_path / "l.csv"
    )
    pl.DataFrame({"question_key": ["F121"], "pro_score": [0.6]}).write_csv(tmp_path / "g.csv")
    gt = read_released_ground_truth(tmp_path / "c.csv", tmp_path / "l.csv", tmp_path / "g.csv")
    assert sorted(map(tuple, gt.select("level", "group").rows())) == [
        ("country", "DK"),
        ("country", "US"),
        ("global", "global"),
        ("language", "da"),
    ]
    assert set(gt["question_key"]) == {"f121"}
    pl.DataFrame({"lnge": ["da"], "question_key": ["F121"], "pro_score": [0.88]}).write_csv(
        tmp_path / "bad.csv"
    )
    with pytest.raises(InputError, match=r"bad\.csv: no language column"):
        read_released_ground_truth(language_path=tmp_path / "bad.csv")


def test_country_languages_one_language_per_country(tmp_path):
    pl.DataFrame({"cntry_AN": ["CA", "CA"], "lnge_iso": ["en", "fr"]}).write_csv(
        tmp_path / "cl.csv"
    )
    with pytest.raises(InputError, match="country 'CA' has more than one language"):
        read_released_country_languages(tmp_path / "cl.csv")


def test_capability_is_mean_score_over_benchmarks_with_aliases():
    df = pl.DataFrame(
        {
            "model": ["Gemma-2 2B", "Gemma-2 2B", "gemma-2-2b-it", "Gemma-2 2B"],
            "benchmark": ["DANSK", "SCALA-DA", "ScandiQA-DA", "ENEM"],
            "language": ["Danish", "Danish", "da", "Portuguese"],
            "score": [28.2, 20.0, 58.5, 10.0],
        }
    )
    cap = capability_table(
        df, "t", model_aliases={"Gemma-2 2B": "gemma-2-2b-it"}, exclude_benchmarks=["ENEM"]
    )
    assert cap.height == 1
    row = cap.row(0, named=True)
    assert (row["model"], row["language"], row["n_benchmarks"]) == ("gemma-2-2b-it", "da", 3)
    assert row["capability"] == pytest.approx((28.2 + 20.0 + 58.5) / 3 / 100)
    with pytest.raises(InputError, match="language 'Klingon' is neither"):
        capability_table(df.with_columns(pl.lit("Klingon").alias("language")), "t")
    assert language_code("Portuguese", "t") == "pt"


def test_paper_table3_capability_resource():
    cap = read_capability_table(
        REPO / "resources/alignment/capability_rystrom2025_table3.csv",
        model_aliases={"Gemma-2 27B": "gemma-2-27b-it"},
    )
    assert cap.height == 6 * 4
    row = cap.filter((pl.col("model") == "gemma-2-27b-it") & (pl.col("language") == "pt")).row(
        0, named=True
    )
    assert row["capability"] == pytest.approx((56.4 + 56.4 + 78.7) / 300)  # Table 3, Portuguese


def test_capability_from_lm_eval_metrics(tmp_path):
    path = tmp_path / "metrics.parquet"
    pl.DataFrame(
        {
            "model": ["m"] * 4,
            "task": ["h_en", "g_en", "g_el", "g_all"],
            "benchmark": ["hellaswag", "global_mmlu", "global_mmlu", "global_mmlu"],
            "language": ["en", "en", "el", "all"],
            "metric": ["acc_norm", "acc", "acc", "acc"],
            "value": [0.3, 0.5, 0.25, 0.4],
            "stderr": [0.01] * 4,
            "n": [10] * 4,
        }
    ).write_parquet(path)
    cap = capability_from_general_eval([path])
    assert dict(zip(cap["language"], cap["capability"], strict=True)) == pytest.approx(
        {"el": 0.25, "en": 0.4}
    )
    only = capability_from_general_eval([path], benchmarks=["hellaswag"])
    assert only["capability"].to_list() == [0.3]


def test_scored_tables_drop_and_count_missing_polarity(tmp_path):
    path = tmp_path / "tiny.parquet"
    pl.DataFrame(
        {
            "model": ["tiny"] * 3,
            "family": ["tiny"] * 3,
            "language": ["en"] * 3,
            "question_key": ["F121", "f120", "f121"],
            "response_id": ["a", "b", "c"],
            "pro_score": [0.5, None, 1.0],
        }
    ).write_parquet(path)
    responses, drops = responses_from_scored([path])
    assert responses.height == 2 and drops.reasons["no pro or con summary"] == 1
    with pytest.raises(InputError, match="missing column"):
        pl.DataFrame({"model": ["x"]}).write_parquet(tmp_path / "bad.parquet")
        responses_from_scored([tmp_path / "bad.parquet"])


def test_human_consistency_readers(tmp_path):
    pl.DataFrame({"cntry_AN": ["US", "DK"], "self_consistency": [0.66, 0.76]}).write_csv(
        tmp_path / "h.csv"
    )
    assert read_human_consistency(tmp_path / "h.csv")["consistency"].to_list() == [0.76, 0.66]
    # the WVS pipeline's summary: level, group, mean (country level preferred)
    pl.DataFrame(
        {"level": ["country", "language"], "group": ["US", "en"], "mean": [0.7, 0.8]}
    ).write_parquet(tmp_path / "s.parquet")
    h = read_human_consistency(tmp_path / "s.parquet")
    assert h.to_dicts() == [{"group": "US", "consistency": 0.7}]


def test_prepare_inputs_fails_when_no_topic_has_ground_truth(tmp_path):
    released_table().drop("ground_truth_pro_score").write_csv(tmp_path / "r.csv")
    pl.DataFrame({"question_key": ["X999"], "pro_score": [0.6]}).write_csv(tmp_path / "g.csv")
    with pytest.raises(InputError, match="no topic of the responses has ground truth"):
        prepare_inputs(
            responses_source="file",
            responses_path=tmp_path / "r.csv",
            ground_truth_source="file",
            global_path=tmp_path / "g.csv",
        )


def test_prepare_inputs_adds_merged_truth(tmp_path):
    released_table().write_csv(tmp_path / "r.csv")
    pl.DataFrame({"question_key": ["F121", "F120"], "pro_score": [0.6, 0.5]}).write_csv(
        tmp_path / "g.csv"
    )
    inputs = prepare_inputs(
        responses_source="file",
        responses_path=tmp_path / "r.csv",
        ground_truth_source="file",
        global_path=tmp_path / "g.csv",
    )
    assert set(inputs.ground_truth["level"]) == {"global", "merged"}
    no_merged = prepare_inputs(
        responses_source="file",
        responses_path=tmp_path / "r.csv",
        ground_truth_source="file",
        global_path=tmp_path / "g.csv",
        use_merged=False,
    )
    assert set(no_merged.ground_truth["level"]) == {"global"}


def test_workflow_sources_feed_the_analysis(tmp_path):
    """Scored tables with the WVS pipeline's columns and its polarity table (here the demo's known
    polarity) go through the same path as released data."""
    polarity = pl.read_csv(REPO / "resources/demo/wvs/polarity_truth.csv")
    polarity.write_parquet(tmp_path / "polarity.parquet")
    pl.read_csv(REPO / "resources/wvs/country_languages.csv").write_parquet(tmp_path / "cl.parquet")
    pl.DataFrame(
        {"level": ["country"] * 2, "group": ["US", "DK"], "mean": [0.7, 0.8]}
    ).write_parquet(tmp_path / "h.parquet")
    topics = sorted(set(polarity["question_key"]))[:6]
    rows = []
    for model, family in (("tiny-chat", "tiny"), ("tiny-lora", "tiny")):
        for lang in ("en", "da"):
            for k, t in enumerate(topics):
                for s in range(3):
                    n_pro, n_con = (k + s) % 4, 3 - (k + s) % 4
                    rows.append(
                        {
                            "model": model,
                            "family": family,
                            "language": lang,
                            "prompt_id": f"p{k}",
                            "template_id": "t0",
                            "topic_variant_id": "v0",
                            "question_key": t,
                            "response_id": f"{lang}-{k}-{s}",
                            "sample": s,
                            "n_items": 3,
                            "n_pro": n_pro,
                            "n_con": n_con,
                            "n_null": 0,
                            "n_invalid": 0,
                            "pro_score": n_pro / (n_pro + n_con),
                        }
                    )
    for model in ("tiny-chat", "tiny-lora"):
        pl.DataFrame([r for r in rows if r["model"] == model]).write_parquet(
            tmp_path / f"{model}.parquet"
        )
    inputs = prepare_inputs(
        responses_source="workflow",
        scored_paths=[tmp_path / "tiny-chat.parquet", tmp_path / "tiny-lora.parquet"],
        ground_truth_source="workflow",
        polarity_path=tmp_path / "polarity.parquet",
        country_languages_path=tmp_path / "cl.parquet",
        human_consistency_path=tmp_path / "h.parquet",
    )
    assert inputs.responses.height == len(rows)
    assert {"country", "language", "global"} <= set(inputs.ground_truth["level"])
    assert inputs.human_consistency["group"].to_list() == ["DK", "US"]
    from polyculture.wvs.alignment import alignment_table, build_analysis_data

    table = alignment_table(
        build_analysis_data(inputs.responses, inputs.ground_truth, inputs.country_languages),
        scheme="cluster",
        rounds=20,
        seed=1,
    )
    native = table.filter((pl.col("level") == "language") & (pl.col("group") == pl.col("language")))
    assert native.height == 2 * 2 * 2  # models × languages × units
    assert native.filter(pl.col("unit") == "topic")["n_points"].to_list() == [6, 6, 6, 6]
