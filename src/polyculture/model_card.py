"""Model cards of the trained LoRA adapters: a README.md with the YAML front matter that the
Hugging Face Hub reads, the training configuration, the training data per source, region and
language, the held-out loss, and the evaluation results that the run produced for the adapter.

Two cards are written. ``train_lora`` puts a training card (no evaluation results yet) into the
adapter directory in place of PEFT's empty stub. After the evaluations, the ``model_card`` rule
writes the release directory ``release/<variant>/``: a copy of the adapter files with the full
card, whose evaluation tables are read from the run's own tables (BLEnD SEM-B / SEM-W per
country and the macro mean over countries, the general benchmarks, WVS alignment and
self-consistency). The release directory is a separate rule output, so the trained adapter is
never rewritten after the rules that read it have run; it is what ``push_to_hub`` uploads.

Front matter keys follow the Hub's model card specification: ``base_model`` (only a Hub model id;
a local or built-in base model is named in the text instead), ``library_name: peft``,
``language`` (the ISO 639 codes of the training data), ``license``, ``tags``, ``datasets``,
``pipeline_tag`` and ``model-index`` (the macro means and benchmark scores, in the
``huggingface_hub`` eval-results layout).
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from polyculture.errors import InputError
from polyculture.io import atomic_dir

README = "README.md"
LIBRARY = "peft"
PIPELINE_TAG = "text-generation"
MACRO = "macro mean"
SUMMARY_COUNTRY = "All"  # compare_models' summary rows: 'All' and 'All (pooled)'
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FRONT = re.compile(r"\A---\n(.*?)\n---\n", re.S)
LANGUAGE_KINDS = ("English", "local")


def is_hub_id(spec: str) -> bool:
    """Whether a model spec names a Hugging Face Hub repository (owner/name, not a local path
    or a builtin: model)."""
    return bool(_HUB_ID.match(spec)) and not Path(spec).exists()


# --------------------------------------------------------------------------------------------
# rendering and parsing


def render_card(front: Mapping[str, Any], body: str) -> str:
    """A README: YAML front matter between '---' lines, then the Markdown body."""
    meta = yaml.safe_dump(dict(front), sort_keys=False, allow_unicode=True, width=100)
    return f"---\n{meta}---\n\n{body.strip()}\n"


def parse_card(text: str) -> tuple[dict[str, Any], str]:
    """The front matter (a dict) and the body of a README written by :func:`render_card`."""
    m = _FRONT.match(text)
    if m is None:
        raise InputError("model card", "no YAML front matter between '---' lines at the top")
    front = yaml.safe_load(m.group(1))
    if not isinstance(front, dict):
        raise InputError("model card", "the front matter is not a YAML mapping")
    return front, text[m.end() :]


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (cells already formatted)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# front matter


def card_languages(summary: Mapping[str, Any]) -> list[str]:
    """ISO codes of the languages the adapter was trained on (from the training summary)."""
    langs = {
        row["language"]
        for row in summary.get("data", [])
        if row.get("train", 0) > 0 and re.fullmatch(r"[a-z]{2,3}", str(row["language"]))
    }
    return sorted(langs)


def front_matter(
    *,
    base_model: str,
    languages: Sequence[str],
    license: str,
    tags: Sequence[str],
    datasets: Sequence[str],
    model_index: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The Hub metadata of an adapter card (base_model only when it is a Hub id)."""
    front: dict[str, Any] = {}
    if is_hub_id(base_model):
        front["base_model"] = base_model
    front["library_name"] = LIBRARY
    front["pipeline_tag"] = PIPELINE_TAG
    if languages:
        front["language"] = list(languages)
    front["license"] = license
    front["tags"] = list(dict.fromkeys(["lora", "peft", *tags]))
    if datasets:
        front["datasets"] = list(datasets)
    if model_index:
        front["model-index"] = model_index
    return front


# --------------------------------------------------------------------------------------------
# training sections


def training_section(summary: Mapping[str, Any], base_model: str) -> str:
    """Markdown: how the adapter was trained (settings, data, losses, resume)."""
    s = summary["settings"]
    settings_rows = [(f"`{k}`", f"`{v}`") for k, v in s.items()]
    counts = summary.get("data", [])
    data_rows = [
        (r["source"], r["region"], r["language"], r["train"], r["heldout"], r["dropped"])
        for r in counts
    ]
    totals = (
        "**total**",
        "",
        "",
        sum(r["train"] for r in counts),
        sum(r["heldout"] for r in counts),
        sum(r["dropped"] for r in counts),
    )
    resume = summary.get("resume", {})
    lines = [
        "## Training",
        "",
        f"LoRA adapter of `{base_model}` trained with supervised fine-tuning on cross-lingual "
        "consensus dialogues (loss on assistant turns only) by the polyculture workflow, "
        f"variant `{summary['group']}`: {summary['steps']} optimizer steps on "
        f"{summary['num_processes']} process(es) in {summary['precision']}.",
        "",
        f"- final training loss: {_fmt(summary.get('final_loss'), 4)}",
        f"- final held-out loss: {_fmt(summary.get('final_heldout_loss'), 4)} "
        f"({summary.get('examples_heldout', 0)} held-out examples, "
        f"share {s.get('heldout_share', 0.0)})",
        f"- examples: {summary['examples_in']} in the training file, "
        f"{summary['examples_used']} trained on, {summary.get('examples_heldout', 0)} held out, "
        f"{summary['examples_dropped']} dropped (no assistant tokens left after truncation)",
    ]
    if resume.get("from_checkpoint"):
        lines.append(
            f"- resumed from `{resume['from_checkpoint']}` ({resume['resumed_steps']} steps), "
            f"then trained {resume['trained_steps']} steps"
        )
    lines += [
        "",
        "### Settings",
        "",
        markdown_table(("setting", "value"), settings_rows),
        "",
        "### Training data",
        "",
        "Examples per source, region and language (the held-out split is stratified by them).",
        "",
        markdown_table(
            ("source", "region", "language", "train", "held out", "dropped"),
            [*data_rows, totals],
        ),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# evaluation sections


def blend_rows(scores: pl.DataFrame, model: str) -> pl.DataFrame:
    """One model's BLEnD scores per country and language kind (mean over the prompt
    templates: prompt_id 'all'), and the macro mean over countries per language kind:
    compare_models' country 'All' row (the mean of the per-country scores), or that mean
    computed from the per-country rows where the table has no such row. The pooled row
    ('All (pooled)') is not shown."""
    mine = scores.filter((pl.col("model") == model) & (pl.col("prompt_id") == "all"))
    cols = ["country", "language", "language_kind", "sem_b", "sem_w", "n_valid"]
    part = mine.filter(~pl.col("country").str.starts_with(SUMMARY_COUNTRY)).select(cols)
    table_macro = mine.filter(pl.col("country") == SUMMARY_COUNTRY).select(
        "language_kind", "sem_b", "sem_w", "n_valid"
    )
    computed = part.group_by("language_kind").agg(
        pl.col("sem_b").mean(), pl.col("sem_w").mean(), pl.col("n_valid").sum()
    )
    macro = table_macro if table_macro.height else computed
    macro = macro.with_columns(pl.lit(MACRO).alias("country"), pl.lit("").alias("language"))
    kind_order = pl.col("language_kind").replace_strict(
        {k: i for i, k in enumerate(LANGUAGE_KINDS)}, default=len(LANGUAGE_KINDS)
    )
    part = part.sort(kind_order, "country")
    macro = macro.sort(kind_order).select(cols)
    return pl.concat([part, macro.cast(part.schema)])


def blend_section(scores: pl.DataFrame, model: str, base: str | None) -> tuple[str, list]:
    """Markdown table of BLEnD SEM-B / SEM-W per country and macro mean (with the base model's
    scores beside them where it was evaluated), and model-index metrics of the macro means."""
    rows = blend_rows(scores, model)
    if rows.height == 0:
        raise InputError("blend scores", f"no BLEnD scores of model '{model}'")
    base_rows = blend_rows(scores, base) if base else None
    lookup = {}
    if base_rows is not None:
        lookup = {(r["country"], r["language_kind"]): r for r in base_rows.iter_rows(named=True)}
    table = []
    metrics = []
    for r in rows.iter_rows(named=True):
        b = lookup.get((r["country"], r["language_kind"]), {})
        label = f"**{MACRO}**" if r["country"] == MACRO else r["country"]
        table.append(
            (
                label,
                r["language_kind"],
                r["language"],
                _fmt(r["sem_b"], 2),
                _fmt(r["sem_w"], 2),
                _fmt(b.get("sem_b"), 2) if base else None,
                _fmt(b.get("sem_w"), 2) if base else None,
                r["n_valid"],
            )
        )
        if r["country"] == MACRO:
            for key, name in (("sem_b", "SEM-B"), ("sem_w", "SEM-W")):
                if r[key] is not None:
                    metrics.append(
                        {
                            "type": key,
                            "value": round(float(r[key]), 4),
                            "name": f"{name} {MACRO} ({r['language_kind']} questions)",
                        }
                    )
    headers = ["country", "questions in", "language", "SEM-B", "SEM-W"]
    if base:
        headers += [f"SEM-B `{base}`", f"SEM-W `{base}`"]
    else:
        table = [row[:5] + row[7:] for row in table]
    headers.append("questions")
    text = "\n".join(
        [
            "### BLEnD short-answer questions",
            "",
            "SEM-B and SEM-W in percent (the benchmark's scoring rule), the mean over the prompt "
            "templates, per country and question language; the macro mean weighs every country "
            "equally.",
            "",
            markdown_table(headers, table),
        ]
    )
    return text, metrics


def general_section(scores: pl.DataFrame, model: str, base: str | None) -> tuple[str, list]:
    """Markdown table of the general benchmarks (per task and per benchmark) and model-index
    metrics of each task."""
    part = scores.filter(pl.col("model") == model).sort("benchmark", "task", "language")
    if part.height == 0:
        raise InputError("general scores", f"no general benchmark scores of model '{model}'")
    base_part = scores.filter(pl.col("model") == base) if base else None
    lookup = {}
    if base_part is not None:
        lookup = {
            (r["benchmark"], r["task"], r["language"], r["metric"]): r["value"]
            for r in base_part.iter_rows(named=True)
        }
    table, metrics = [], []
    for r in part.iter_rows(named=True):
        row = [r["benchmark"], r["task"], r["language"], r["metric"], _fmt(float(r["value"]), 4)]
        if base:
            key = (r["benchmark"], r["task"], r["language"], r["metric"])
            v = lookup.get(key)
            row.append(_fmt(float(v), 4) if v is not None else "–")
        row.append(r["n"])
        table.append(row)
        metrics.append(
            {
                "type": r["metric"],
                "value": round(float(r["value"]), 4),
                "name": f"{r['benchmark']} {r['task']} ({r['language']})",
            }
        )
    headers = ["benchmark", "task", "language", "metric", "score"]
    if base:
        headers.append(f"`{base}`")
    headers.append("items")
    text = "\n".join(
        [
            "### General benchmarks",
            "",
            "lm-evaluation-harness scores; task 'all' is the benchmark's macro mean over its "
            "tasks (languages), 'all (pooled)' its items pooled, as compare_models reports them.",
            "",
            markdown_table(headers, table),
        ]
    )
    return text, metrics


def alignment_section(
    alignment: pl.DataFrame | None,
    consistency: pl.DataFrame | None,
    model: str,
    unit: str,
) -> str:
    """Markdown tables of WVS cultural alignment (Spearman correlation with the survey
    population's polarity, with its bootstrap interval) and self-consistency."""
    parts = ["### WVS cultural alignment", ""]
    if alignment is not None:
        part = alignment.filter((pl.col("model") == model) & (pl.col("unit") == unit)).sort(
            "level", "language", "group"
        )
        parts += [
            "Spearman correlation between the model's polarity per topic and the survey "
            f"population's (unit: {unit}), with the bootstrap interval.",
            "",
            markdown_table(
                ("level", "language", "population", "alignment", "interval", "responses"),
                [
                    (
                        r["level"],
                        r["language"],
                        r["group"],
                        _fmt(r["alignment"], 3),
                        f"[{_fmt(r['ci_low'], 3)}, {_fmt(r['ci_high'], 3)}]",
                        r["n_responses"],
                    )
                    for r in part.iter_rows(named=True)
                ],
            ),
            "",
        ]
    if consistency is not None:
        part = consistency.filter(pl.col("model") == model).sort("language")
        parts += [
            "Self-consistency: agreement between repeated answers to the same topic (no "
            "self-pairs), with the bootstrap interval.",
            "",
            markdown_table(
                ("language", "self-consistency", "interval", "pairs", "topics"),
                [
                    (
                        r["language"],
                        _fmt(r["consistency"], 3),
                        f"[{_fmt(r['ci_low'], 3)}, {_fmt(r['ci_high'], 3)}]",
                        r["n_pairs"],
                        r["n_topics"],
                    )
                    for r in part.iter_rows(named=True)
                ],
            ),
        ]
    return "\n".join(parts).rstrip()


def model_index(
    name: str, blend_metrics: list, general_metrics: list, blend_dataset: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The Hub's model-index entry of one model: BLEnD macro means and general benchmarks."""
    results = []
    if blend_metrics:
        results.append(
            {
                "task": {"type": "question-answering", "name": "BLEnD short-answer questions"},
                "dataset": dict(blend_dataset),
                "metrics": blend_metrics,
            }
        )
    if general_metrics:
        results.append(
            {
                "task": {"type": "multiple-choice", "name": "general benchmarks (lm-eval)"},
                "dataset": {"type": "lm_eval", "name": "lm-evaluation-harness tasks"},
                "metrics": general_metrics,
            }
        )
    return [{"name": name, "results": results}] if results else []


# --------------------------------------------------------------------------------------------
# whole cards


def training_card(
    summary: Mapping[str, Any], base_model: str, *, release_hint: str | None = None
) -> str:
    """The card written into the adapter directory by train_lora: front matter without a
    licence (the release card's) and the training sections."""
    front: dict[str, Any] = {}
    if is_hub_id(base_model):
        front["base_model"] = base_model
    front["library_name"] = LIBRARY
    langs = card_languages(summary)
    if langs:
        front["language"] = langs
    front["tags"] = ["lora", "peft", "polyculture"]
    body = [
        f"# polyculture LoRA adapter `{summary['group']}`",
        "",
        training_section(summary, base_model),
    ]
    body += [
        "",
        "## Evaluation",
        "",
        release_hint
        or "The evaluation results of this adapter are in the release card that the workflow "
        "writes after the evaluations (release/<variant>/README.md).",
    ]
    return render_card(front, "\n".join(body))


def benchmarks_section(summaries: Sequence[Mapping[str, Any]], model: str, base: str | None) -> str:
    """One row per benchmark (polyculture.evals; its summary.json documents): the headline
    (macro mean over the benchmark's groups) of `model`, of its base where evaluated, and the
    paired difference with its bootstrap interval and p-value."""
    rows = []
    for doc in summaries:
        metric = doc["headline"]["metric"]
        macro = {
            a["model"]: a
            for a in doc["aggregates"]
            if a["metric"] == metric and a["group"] == "All"
        }
        if model not in macro:
            continue
        diff = next(
            (
                c
                for c in doc["comparisons"]
                if c["model"] == model and c["metric"] == metric and c["group"] == "All"
            ),
            None,
        )
        rows.append(
            [
                doc["benchmark"],
                metric,
                _fmt(macro[model]["score"], 1),
                _fmt(macro[base]["score"], 1) if base in macro else "–",
                "–"
                if diff is None
                else f"{diff['delta']:+.1f} [{diff['ci_low']:+.1f}, {diff['ci_high']:+.1f}], p {diff['p_value']:.3f}",
                str(macro[model]["n"]),
                str(macro[model]["dropped"]),
            ]
        )
    if not rows:
        return ""
    header = [
        "benchmark",
        "metric",
        model,
        base or "base",
        "difference [CI], p",
        "n",
        "dropped",
    ]
    return "\n".join(
        [
            "### Benchmarks",
            "",
            "Headline per benchmark: macro mean over its groups (results/evaluate/<benchmark>/summary.md).",
            "",
            markdown_table(header, rows),
        ]
    )


def release_card(
    *,
    summary: Mapping[str, Any],
    base_model: str,
    license: str,
    tags: Sequence[str],
    datasets: Sequence[str],
    models: Sequence[str],
    base_eval_model: str | None,
    blend_scores: pl.DataFrame | None,
    general_scores: pl.DataFrame | None,
    alignment: pl.DataFrame | None,
    consistency: pl.DataFrame | None,
    alignment_unit: str,
    blend_dataset: Mapping[str, str],
    run_name: str,
    base_model_path: str | None = None,
    benchmarks: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The full card of one adapter: training sections and every evaluation of the eval
    models that apply it (`models`), beside the base model's where it was evaluated.
    `base_model_path` is where the base model loads from when the spec is not a Hub id (e.g.
    the directory a builtin: model is built in)."""
    sections = []
    index = []
    for model in models:
        parts = [f"## Evaluation: `{model}`", ""]
        blend_metrics: list = []
        general_metrics: list = []
        if blend_scores is not None:
            text, blend_metrics = blend_section(blend_scores, model, base_eval_model)
            parts += [text, ""]
        if general_scores is not None:
            text, general_metrics = general_section(general_scores, model, base_eval_model)
            parts += [text, ""]
        bench_text = benchmarks_section(benchmarks, model, base_eval_model)
        if bench_text:
            parts += [bench_text, ""]
        if alignment is not None or consistency is not None:
            parts += [alignment_section(alignment, consistency, model, alignment_unit), ""]
        if len(parts) == 2:
            parts.append(
                "This run did not evaluate the model (pipelines evaluate, wvs and "
                "alignment are off)."
            )
        sections.append("\n".join(parts).rstrip())
        index += model_index(model, blend_metrics, general_metrics, blend_dataset)
    if not models:
        sections.append(
            "## Evaluation\n\nNo entry of `eval_models` applies this adapter, so this run did "
            "not evaluate it."
        )
    front = front_matter(
        base_model=base_model,
        languages=card_languages(summary),
        license=license,
        tags=tags,
        datasets=datasets,
        model_index=index,
    )
    intro = [
        f"# polyculture LoRA adapter `{summary['group']}` (run `{run_name}`)",
        "",
        "Written by the polyculture workflow after its evaluations: every number below is this "
        "run's own.",
        "",
        "## Use",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base_model_path or base_model}")',
        'model = PeftModel.from_pretrained(base, "<this directory or repository>")',
        "```",
    ]
    body = "\n".join([*intro, "", training_section(summary, base_model), "", *sections])
    return render_card(front, body)


def write_release(
    adapter_dir: str | os.PathLike[str], card: str, out_dir: str | os.PathLike[str]
) -> None:
    """Copy the adapter's files (not its README) and the card into `out_dir`, atomically."""
    src = Path(adapter_dir)
    with atomic_dir(out_dir) as tmp:
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name != README:
                shutil.copy2(f, tmp / f.name)
        (tmp / README).write_text(card, encoding="utf-8")
