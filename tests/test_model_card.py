"""Model cards (polyculture.model_card): front matter that the Hugging Face Hub's own parser
reads, and tables whose numbers are the evaluation tables' (on small hand-made tables; the
demo run's cards are checked in tests/test_train_workflow.py)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from polyculture import model_card as MC
from polyculture.errors import InputError

SUMMARY = {
    "group": "full",
    "examples_in": 20,
    "examples_used": 15,
    "examples_heldout": 4,
    "examples_dropped": 1,
    "steps": 8,
    "num_processes": 1,
    "precision": "fp32",
    "final_loss": 2.5,
    "final_heldout_loss": 2.75,
    "settings": {"lora_r": 16, "learning_rate": 1e-5, "heldout_share": 0.2},
    "data": [
        {
            "source": "cultural",
            "region": "ES",
            "language": "es",
            "examples": 10,
            "train": 8,
            "heldout": 2,
            "dropped": 0,
        },
        {
            "source": "cultural",
            "region": "KR",
            "language": "ko",
            "examples": 5,
            "train": 3,
            "heldout": 1,
            "dropped": 1,
        },
        {
            "source": "general",
            "region": "(general)",
            "language": "en",
            "examples": 5,
            "train": 4,
            "heldout": 1,
            "dropped": 0,
        },
    ],
    "resume": {"from_checkpoint": None, "resumed_steps": 0, "trained_steps": 8, "refused": []},
}


def blend_scores() -> pl.DataFrame:
    rows = []
    values = {
        ("m-full", "US"): (40.0, 30.0, 35.0, 25.0),
        ("m-full", "Spain"): (20.0, 10.0, 15.5, 5.25),
        ("base", "US"): (38.0, 28.0, 33.0, 23.0),
        ("base", "Spain"): (18.0, 9.0, 14.0, 4.0),
    }
    for (model, country), (eb, ew, lb, lw) in values.items():
        local = "en" if country == "US" else "es"
        for prompt, shift in (("all", 0.0), ("inst-4", 1.0)):
            rows.append((model, country, "en", "English", prompt, eb + shift, ew, 19))
            rows.append((model, country, local, "local", prompt, lb + shift, lw, 19))
        # compare_models' pooled summary row is not shown
        rows.append((model, "All (pooled)", "en", "English", "all", 98.0, 98.0, 38))
    # and its 'All' rows are the macro means over countries (what the card shows)
    for model in ("m-full", "base"):
        for kind, lang, (b, w) in (("English", "en", (0, 1)), ("local", "local", (2, 3))):
            vals = [v for (m, _), v in values.items() if m == model]
            mean_b = sum(v[b] for v in vals) / len(vals)
            mean_w = sum(v[w] for v in vals) / len(vals)
            rows.append((model, "All", lang, kind, "all", mean_b, mean_w, 38))
    return pl.DataFrame(
        rows,
        schema=[
            "model",
            "country",
            "language",
            "language_kind",
            "prompt_id",
            "sem_b",
            "sem_w",
            "n_valid",
        ],
        orient="row",
    )


def general_scores() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model": ["m-full", "m-full", "base"],
            "benchmark": ["hellaswag", "hellaswag", "hellaswag"],
            "task": ["demo_hellaswag_en", "all", "all"],
            "language": ["en", "all", "all"],
            "metric": ["acc_norm", "acc_norm", "acc_norm"],
            "value": [0.5, 0.41666, 0.3],
            "n": [6, 12, 12],
        }
    )


def alignment() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model": ["m-full", "m-full", "base"],
            "family": ["tiny"] * 3,
            "language": ["en", "en", "en"],
            "level": ["country", "global", "global"],
            "group": ["US", "global", "global"],
            "unit": ["topic", "topic", "topic"],
            "alignment": [0.25, -0.125, 0.9],
            "ci_low": [0.1, -0.5, 0.8],
            "ci_high": [0.4, 0.2, 1.0],
            "n_responses": [16, 16, 16],
        }
    )


def consistency() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model": ["m-full", "base"],
            "language": ["en", "en"],
            "consistency": [0.625, 0.1],
            "ci_low": [0.5, 0.0],
            "ci_high": [0.75, 0.2],
            "n_pairs": [8, 8],
            "n_topics": [8, 8],
        }
    )


def card(**kw) -> str:
    args = dict(
        summary=SUMMARY,
        base_model="meta-llama/Llama-3.1-8B-Instruct",
        license="llama3.1",
        tags=["polyculture", "cultural-alignment"],
        datasets=["CohereForAI/aya_dataset"],
        models=["m-full"],
        base_eval_model="base",
        blend_scores=blend_scores(),
        general_scores=general_scores(),
        alignment=alignment(),
        consistency=consistency(),
        alignment_unit="topic",
        blend_dataset={"type": "nayeon212/BLEnD", "name": "BLEnD"},
        run_name="paper",
    )
    return MC.release_card(**{**args, **kw})


def table_row(text: str, first_cell: str) -> list[str]:
    """Cells of the first Markdown table row whose first cell is `first_cell`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r}")


def test_front_matter_is_what_the_hub_reads() -> None:
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    text = card()
    front, body = MC.parse_card(text)
    assert front["base_model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert front["library_name"] == "peft" and front["license"] == "llama3.1"
    assert front["language"] == ["en", "es", "ko"]  # the training data's languages
    assert front["tags"][:2] == ["lora", "peft"] and "polyculture" in front["tags"]
    assert front["datasets"] == ["CohereForAI/aya_dataset"]
    # huggingface_hub's own parser reads the same metadata and the evaluation results
    hub = ModelCard(text)
    assert hub.data.base_model == front["base_model"] and hub.data.library_name == "peft"
    assert hub.data.license == "llama3.1"
    name, results = model_index_to_eval_results(front["model-index"])
    assert name == "m-full"
    by_name = {r.metric_name: r.metric_value for r in results}
    assert by_name["SEM-B macro mean (English questions)"] == pytest.approx(30.0)  # (40+20)/2
    assert by_name["SEM-W macro mean (local questions)"] == pytest.approx(15.125)  # (25+5.25)/2
    assert by_name["hellaswag all (all)"] == pytest.approx(0.4167)
    assert body.startswith("\n# polyculture LoRA adapter `full`")


def test_tables_hold_the_evaluation_numbers() -> None:
    text = card()
    # BLEnD: per country (prompt 'all', not a template's row), the base beside it, and the
    # macro mean over countries (not the pooled 'All' row)
    assert table_row(text, "US")[3:8] == ["40.00", "30.00", "38.00", "28.00", "19"]
    assert table_row(text, "Spain")[3:5] == ["20.00", "10.00"]
    macro = [line for line in text.splitlines() if line.startswith(f"| **{MC.MACRO}**")]
    assert len(macro) == 2
    assert re.search(r"\| English \|  \| 30\.00 \| 20\.00 \| 28\.00 \| 18\.50 \| 38 \|", macro[0])
    assert "| local |  | 25.25 | 15.12 |" in macro[1]  # (35+15.5)/2, (25+5.25)/2
    assert "98.00" not in text
    # a table without compare_models' 'All' rows: the card computes the same macro means
    no_macro = blend_scores().filter(pl.col("country") != "All")
    assert card(blend_scores=no_macro) == text
    # ... and where the table has them, the card shows the table's own number
    other = blend_scores().with_columns(
        sem_b=pl.when(
            (pl.col("country") == "All")
            & (pl.col("model") == "m-full")
            & (pl.col("language_kind") == "English")
        )
        .then(77.0)
        .otherwise(pl.col("sem_b"))
    )
    assert f"| **{MC.MACRO}** | English |  | 77.00 |" in card(blend_scores=other)
    # general benchmarks, alignment and self-consistency
    assert table_row(text, "hellaswag") == [
        "hellaswag",
        "all",
        "all",
        "acc_norm",
        "0.4167",
        "0.3000",
        "12",
    ]
    assert "| hellaswag | demo_hellaswag_en | en | acc_norm | 0.5000 | – | 6 |" in text
    assert "| global | en | global | -0.125 | [-0.500, 0.200] | 16 |" in text
    assert "| country | en | US | 0.250 | [0.100, 0.400] | 16 |" in text
    assert "| en | 0.625 | [0.500, 0.750] | 8 | 8 |" in text
    assert "0.900" not in text  # the base model's alignment is not the adapter's
    # the training data per region and language with the held-out counts, and the totals
    assert "| cultural | KR | ko | 3 | 1 | 1 |" in text
    assert "| **total** |  |  | 15 | 4 | 1 |" in text
    assert "final held-out loss: 2.7500" in text


def test_cards_of_local_models_and_runs_without_evaluations() -> None:
    text = card(
        base_model="builtin:tiny-chat",
        base_eval_model=None,
        general_scores=None,
        alignment=None,
        consistency=None,
        datasets=[],
    )
    front, body = MC.parse_card(text)
    assert "base_model" not in front and "datasets" not in front  # not Hub ids
    assert "`builtin:tiny-chat`" in body
    built = card(base_model="builtin:tiny-chat", base_model_path="results/models/tiny-chat")
    assert 'from_pretrained("results/models/tiny-chat")' in built
    assert "General benchmarks" not in body and "WVS" not in body
    assert table_row(text, "US")[3:6] == ["40.00", "30.00", "19"]  # no base columns
    none = card(blend_scores=None, general_scores=None, alignment=None, consistency=None)
    assert "did not evaluate" in none and "model-index" not in MC.parse_card(none)[0]
    unused = card(models=[])
    assert "No entry of `eval_models` applies this adapter" in unused
    with pytest.raises(InputError, match="no BLEnD scores of model 'other'"):
        card(models=["other"])


def test_training_card_and_parse_errors() -> None:
    text = MC.training_card(SUMMARY, "results/models/tiny-chat")
    front, body = MC.parse_card(text)
    assert front == {
        "library_name": "peft",
        "language": ["en", "es", "ko"],
        "tags": ["lora", "peft", "polyculture"],
    }
    assert "release/<variant>/README.md" in body
    with pytest.raises(InputError, match="front matter"):
        MC.parse_card("# no front matter\n")
    assert MC.is_hub_id("meta-llama/Llama-3.1-8B-Instruct")
    assert not MC.is_hub_id("builtin:tiny-chat") and not MC.is_hub_id("results/models/x")


def test_release_dir_is_the_adapter_with_the_card(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    (adapter / "README.md").write_text("training card")
    out = tmp_path / "release" / "full"
    MC.write_release(adapter, "card text\n", out)
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert (out / "README.md").read_text() == "card text\n"
    assert (out / "adapter_model.safetensors").read_bytes() == b"weights"
    MC.write_release(adapter, "second\n", out)  # replaces, leaves no temporary directory
    assert (out / "README.md").read_text() == "second\n"
    assert [p.name for p in out.parent.iterdir()] == ["full"]
