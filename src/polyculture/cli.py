"""The `polyculture` command line: one subcommand per task a researcher runs outside the workflow.

Subcommands register themselves in :data:`SUBCOMMANDS` (name → (help, add_arguments, run)); other
groups add theirs the same way.

    polyculture check --configfile CONFIG [MORE ...] [--print] [--workflow DIR]
    polyculture summary RESULTS_DIR
    polyculture blend-score --data DIR --responses FILE [--rules polyculture|official]
                            [--out FILE] [--per-question FILE]
    polyculture judge-agreement --reference FILE --labels FILE [--out FILE]
    polyculture score --benchmark NAME --responses FILE [--items FILE | --data DIR]
                      [--groups A,B,...] [--settings YAML] [--out FILE]
    polyculture --version
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from polyculture.errors import PolycultureError

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]

SUBCOMMANDS: dict[str, tuple[str, AddArguments, Run]] = {}


def subcommand(name: str, help_text: str, add_arguments: AddArguments) -> Callable[[Run], Run]:
    """Register a subcommand: `help_text` for --help, `add_arguments` fills its parser."""

    def register(run: Run) -> Run:
        SUBCOMMANDS[name] = (help_text, add_arguments, run)
        return run

    return register


def write_table(df: pl.DataFrame, path: str | Path) -> None:
    """Write a table as Parquet, CSV, TSV, JSON or JSONL, chosen by the file's suffix."""
    from polyculture.io import atomic_path, write_parquet

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        write_parquet(df, p)
        return
    writers = {
        ".csv": lambda t: df.write_csv(t),
        ".tsv": lambda t: df.write_csv(t, separator="\t"),
        ".json": lambda t: df.write_json(t),
        ".jsonl": lambda t: df.write_ndjson(t),
    }
    if suffix not in writers:
        raise PolycultureError(
            f"{p}: unsupported output format '{p.suffix}' (expected .parquet, .csv, .tsv, .json, .jsonl)"
        )
    with atomic_path(p) as tmp:
        writers[suffix](tmp)


def workflow_dir(given: Path | None = None) -> Path:
    """The workflow directory (with Snakefile and schemas/): `given`, else the checkout this
    package is installed from (src/polyculture/ → two levels up)."""
    root = given or Path(__file__).resolve().parents[2]
    if not (root / "schemas" / "config.schema.yaml").is_file():
        raise PolycultureError(
            f"{root}: no workflow here (schemas/config.schema.yaml missing); "
            "name the polyculture checkout with --workflow DIR"
        )
    return root


def _check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        required=True,
        nargs="+",
        action="extend",
        type=Path,
        metavar="CONFIG",
        help="the config file(s), as given to snakemake (later files' keys over earlier ones)",
    )
    parser.add_argument(
        "--print",
        action="store_true",
        help="write the effective config, every default filled in, to stdout (YAML)",
    )
    parser.add_argument(
        "--workflow",
        type=Path,
        help="the polyculture checkout whose schemas and bundled resources apply "
        "(default: the one this command is installed from)",
    )


@subcommand(
    "check",
    "check a config as the workflow does, before any job: every problem, or what will run",
    _check_args,
)
def check(args: argparse.Namespace) -> int:
    """Exit 0 with a summary of what the config runs (or the effective config with --print);
    exit 1 listing every problem."""
    import yaml

    from polyculture.config_check import (
        config_problems,
        config_summary,
        config_warnings,
        format_problems,
        load_config_files,
    )

    root = workflow_dir(args.workflow)
    sources = ", ".join(str(p) for p in args.configfile)
    try:
        config = load_config_files(args.configfile)
    except PolycultureError as exc:
        print(f"polyculture check: {exc}", file=sys.stderr)
        return 1
    problems = config_problems(
        config, root / "schemas" / "config.schema.yaml", Path.cwd(), basedir=root
    )
    if problems:
        print(format_problems(problems, sources), file=sys.stderr)
        return 1
    from polyculture.evals.base import benchmark_problems

    for problem in benchmark_problems(config):
        print(f"{sources}: {problem}", file=sys.stderr)
        return 1
    for warning in config_warnings(config, Path.cwd()):
        print(f"{sources}: warning: {warning}", file=sys.stderr)
    if args.print:
        print(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), end="")
    else:
        print(f"{sources}: OK\n{config_summary(config)}")
    return 0


def _plan_args(parser: argparse.ArgumentParser) -> None:
    _check_args(parser)
    parser.add_argument(
        "--profile",
        action="append",
        help="the Snakemake profile the run will use, e.g. profiles/slurm; given twice, an "
        "overlay over it, as with snakemake (default: a local run, profiles/local: no "
        "submissions, no runtime limits)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the plan as JSON")
    parser.add_argument(
        "--forceall",
        action="store_true",
        help="plan every job, also those whose outputs exist (snakemake --forceall)",
    )


@subcommand(
    "plan",
    "what a run will book and cost before it starts: jobs, submissions, GPU-hours, API tokens "
    "and dollars, from Snakemake's dry run of the config through a profile",
    _plan_args,
)
def plan(args: argparse.Namespace) -> int:
    """Print the plan (and write it as JSON); exit 1 naming the key or file at fault when the
    config fails its check, the dry run fails (e.g. more GPUs than a node has) or the price
    table lacks a model the run uses."""
    from polyculture.plan import format_plan, plan_json, plan_run

    root = workflow_dir(args.workflow)
    try:
        result = plan_run(
            Path.cwd(), args.configfile, args.profile, forceall=args.forceall, basedir=root
        )
    except PolycultureError as exc:
        print(f"polyculture plan: {exc}", file=sys.stderr)
        return 1
    print(format_plan(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(plan_json(result) + "\n", encoding="utf-8")
    return 0


def _summary_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="a run's results/")


@subcommand(
    "summary",
    "the headline tables of a finished run in Markdown (also the run's summary.md)",
    _summary_args,
)
def summary(args: argparse.Namespace) -> int:
    """Print the summary of a results directory; exit 1 naming what is missing."""
    from polyculture.summary import summarize_results

    try:
        text = summarize_results(args.results_dir)
    except PolycultureError as exc:
        print(f"polyculture summary: {exc}", file=sys.stderr)
        return 1
    print(text, end="")
    return 0


def _blend_score_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="BLEnD directory with annotations/{Country}_data.json "
        "(questions/ and prompts/ are used to rebuild prompts when the responses name a prompt_id)",
    )
    parser.add_argument(
        "--responses",
        required=True,
        type=Path,
        help="CSV, TSV, Parquet, JSON or JSONL with columns ID, country, language, response "
        "(optional: prompt_id, prompt); language as ISO code or English name",
    )
    parser.add_argument(
        "--out", type=Path, help="write the scores table here (.parquet, .csv, .tsv, .json, .jsonl)"
    )
    parser.add_argument("--per-question", type=Path, help="write the per-question table here")
    parser.add_argument(
        "--rules",
        choices=["polyculture", "official"],
        default="polyculture",
        help="polyculture: the project's fixes of the official scorer's bugs (default); "
        "official: the official evaluation/exact_match.py behaviour, bugs included "
        "(see polyculture.blend)",
    )


@subcommand("blend-score", "score BLEnD short-answer responses (SEM-B / SEM-W)", _blend_score_args)
def blend_score(args: argparse.Namespace) -> int:
    """Score a response file against BLEnD annotations and print SEM-B / SEM-W / n valid."""
    from polyculture.blend import format_scores, score_responses
    from polyculture.io import read_table

    responses = read_table(args.responses)
    scores, per_question = score_responses(
        responses, args.data, source=args.responses, rules=args.rules
    )
    print(format_scores(scores))
    missing = scores.filter(pl.col("n_missing") > 0)
    for r in missing.iter_rows(named=True):
        print(
            f"note: {r['country']}/{r['language']}"
            f"{'/' + r['prompt_id'] if r['prompt_id'] else ''}: {r['n_missing']} of "
            f"{r['n_valid']} valid questions have no response and count as wrong",
            file=sys.stderr,
        )
    if args.out:
        write_table(scores, args.out)
    if args.per_question:
        write_table(per_question, args.per_question)
    return 0


def _score_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--benchmark",
        required=True,
        help="a benchmark folder's name (polyculture.evals), e.g. blend, blend-mcq",
    )
    parser.add_argument(
        "--responses",
        required=True,
        type=Path,
        help="CSV, TSV, Parquet, JSON or JSONL with columns item_id, response (the workflow's "
        "responses.parquet; for blend-mcq also the official response file: MCQID, full_res; "
        "for blend also the blend-score form: ID, country, language, prompt_id, response)",
    )
    parser.add_argument(
        "--items",
        type=Path,
        help="the items the responses answer (the workflow's results/evaluate/NAME/items.parquet); "
        "default: built from the benchmark's settings",
    )
    parser.add_argument("--data", help="the benchmark's data.path (overrides benchmark.yaml)")
    parser.add_argument("--groups", help="comma-separated groups.values (overrides benchmark.yaml)")
    parser.add_argument(
        "--settings", type=Path, help="YAML mapping of overrides of the benchmark's benchmark.yaml"
    )
    parser.add_argument("--model", default="model", help="the model's name in the tables")
    parser.add_argument("--out", type=Path, help="write the per-item scores here")


@subcommand(
    "score",
    "score responses produced anywhere on a benchmark folder's items (per group, macro, pooled)",
    _score_args,
)
def score(args: argparse.Namespace) -> int:
    """Score a response file on a benchmark and print its summary (Markdown)."""
    from polyculture.evals import load_benchmark
    from polyculture.evals.base import deep_merge
    from polyculture.evals.tables import (
        COMPARISON_SCHEMA,
        aggregate,
        score_benchmark,
        summary_markdown,
    )
    from polyculture.io import read_table, read_yaml

    overrides = dict(read_yaml(args.settings) or {}) if args.settings else {}
    if args.data:
        overrides.setdefault("data", {})["path"] = args.data
    if args.groups:
        overrides.setdefault("groups", {})["values"] = args.groups.split(",")
    spec = load_benchmark(args.benchmark, overrides)
    responses = read_table(args.responses)
    if "item_id" not in responses.columns and {"MCQID", "full_res"} <= set(responses.columns):
        responses = responses.rename({"MCQID": "item_id", "full_res": "response"})
    impl = spec.implementation()
    if "item_id" not in responses.columns and hasattr(impl, "responses_from"):
        responses = impl.responses_from(responses, args.responses)
    if args.items:
        items = read_table(args.items)
        if not args.groups and "group" in items.columns:
            groups = list(dict.fromkeys(items["group"].to_list()))
            spec = load_benchmark(
                args.benchmark, deep_merge(overrides, {"groups": {"values": groups}})
            )
    else:
        items = impl.items(spec.settings)
    scores, drops = score_benchmark(spec, items, responses, args.model)
    print(
        summary_markdown(
            spec,
            aggregate(scores, spec, args.model),
            pl.DataFrame(schema=COMPARISON_SCHEMA),
            [],
            0.05,
        ),
        end="",
    )
    if drops.dropped:
        print(
            f"note: {drops.dropped} of {drops.total} answers could not be parsed; they count as wrong",
            file=sys.stderr,
        )
    if args.out:
        write_table(scores, args.out)
    return 0


def _judge_agreement_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reference",
        required=True,
        type=Path,
        help="reference labels: the released per-response JSONL (custom_id, opinions) or a table "
        "with response_id, item_index, label",
    )
    parser.add_argument(
        "--labels",
        required=True,
        type=Path,
        help="the judge's labels in the same shapes, or the workflow's judged tables (stance)",
    )
    parser.add_argument("--out", type=Path, help="write the per-label table here")


@subcommand(
    "judge-agreement",
    "score a stance judge's labels against reference labels (agreement, Cohen's kappa, per label, "
    "effect on response polarity)",
    _judge_agreement_args,
)
def judge_agreement(args: argparse.Namespace) -> int:
    """Print agreement, κ and the polarity effect; per-label precision / recall / F1."""
    import json

    from polyculture.wvs.judge_eval import label_agreement, polarity_effect, read_label_table

    ref = read_label_table(args.reference)
    cand = read_label_table(args.labels)
    summary, per_label = label_agreement(ref, cand)
    print(json.dumps(summary | {"polarity": polarity_effect(ref, cand)}, indent=2))
    print(per_label)
    if args.out:
        write_table(per_label, args.out)
    return 0


def package_version() -> str:
    """The installed package's version (pyproject.toml's, from the package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("polyculture")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="polyculture",
        description="Culturally aligned language models and cultural-alignment measurement. "
        "The workflow itself runs with snakemake (README.md); these commands check its "
        "configs, sum up its results and score outside it.",
        epilog="`polyculture COMMAND --help` shows a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.add_argument("--version", action="version", version=f"polyculture {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `polyculture` console script; bad input exits 2 with the message."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args))
    except PolycultureError as exc:
        print(f"polyculture {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
