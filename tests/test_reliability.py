"""Reliability across the whole DAG, on the demo config: incremental rebuilds (Snakemake's own
dry-run job lists through its Python API), bad input that fails without losing or half-writing
anything, interrupted runs that resume to byte-identical outputs, determinism, secrets that
never reach an output, and drop accounting in the report."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from conftest import SECRETS, SNAKEMAKE, copy_workflow, run_snakemake
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

from polyculture.drops import DropCounter, drops_summary

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
RULE_RE = re.compile(r"^rule (\w+):", flags=re.M)
#: Written by every run (times, hosts): never compared between runs.
VOLATILE = ("logs", "benchmarks")


def rules_of(*groups: str) -> set[str]:
    """Names of the rules that rules/<group>.smk defines."""
    return {
        name
        for group in groups
        for name in RULE_RE.findall((REPO / "rules" / f"{group}.smk").read_text(encoding="utf-8"))
    }


def planned_jobs(
    workdir: Path, config: dict | None = None, targets: list[str] | None = None
) -> dict:
    """Jobs a dry run of `workdir` would run (job -> its outputs), from Snakemake's Python API."""
    cwd = os.getcwd()
    try:
        with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
            workflow = api.workflow(
                snakefile=workdir / "Snakefile",
                workdir=workdir,
                config_settings=ConfigSettings(config=config or {}),
                resource_settings=ResourceSettings(cores=1),
            )
            dag_api = workflow.dag(dag_settings=DAGSettings(targets=set(targets or [])))
            dag_api.execute_workflow(pseudo_executor="dryrun")
            dag = workflow._workflow.dag
            return {
                job: {str(f) for f in job.output}
                for job in dag.needrun_jobs(exclude_finished=False)
                if job.rule.name != "all"
            }
    finally:
        os.chdir(cwd)


def downstream(jobs: dict, seeds: set) -> set:
    """`seeds` and every planned job that (transitively) consumes their output."""
    by_output = {}
    for job in jobs:
        for f in job.input:
            by_output.setdefault(str(f), set()).add(job)
    out, todo = set(seeds), list(seeds)
    while todo:
        job = todo.pop()
        for f in jobs[job]:
            for consumer in by_output.get(f, ()):
                if consumer not in out:
                    out.add(consumer)
                    todo.append(consumer)
    return out


def copy_run(src: Path, dest: Path) -> Path:
    """A copy of a finished run (workflow, results and Snakemake's metadata; times kept)."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def snapshot(results: Path) -> dict[str, str]:
    """sha256 of every result file except logs and benchmarks, by path under results/."""
    out = {}
    for path in sorted(results.rglob("*")):
        rel = path.relative_to(results)
        if path.is_file() and rel.parts[0] not in VOLATILE:
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(results: Path) -> list[str]:
    """Temporary or hidden files a writer could leave behind when interrupted (not Snakemake's
    own time stamps of directory outputs)."""
    return [
        str(p.relative_to(results))
        for p in results.rglob("*")
        if p.is_file()
        and p.name != ".snakemake_timestamp"
        and (p.name.startswith(".") or p.suffix in (".tmp", ".part", ".partial"))
    ]


# ---------------------------------------------------------------- incremental rebuilds


@pytest.fixture(scope="module")
def moved_run(demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished demo run, copied to another directory (as when a project is moved)."""
    return copy_run(demo_run, tmp_path_factory.mktemp("moved") / "project")


def test_untouched_run_has_no_job(demo_run: Path) -> None:
    assert planned_jobs(demo_run) == {}


def test_moved_project_has_no_job(moved_run: Path) -> None:
    assert planned_jobs(moved_run) == {}


@pytest.mark.parametrize(
    ("change", "first_rules", "allowed_groups"),
    [
        # more samples: sampling and everything downstream of it, nothing upstream
        (
            {"consensus": {"samples": 4}},
            {"sample_responses"},
            ("consensus", "train", "evaluate", "benchmarks", "wvs", "alignment", "report"),
        ),
        # a BLEnD generation setting: evaluation and the report only
        (
            {"evaluate": {"blend": {"sampling": {"max_new_tokens": 20}}}},
            {"blend_generate"},
            ("evaluate", "report"),
        ),
        # a WVS bootstrap count: alignment onward only
        ({"alignment": {"bootstrap": {"rounds": 150}}}, {"alignment"}, ("alignment", "report")),
    ],
    ids=["consensus-samples", "blend-max-new-tokens", "alignment-bootstrap"],
)
def test_changed_parameter_reruns_its_rule_and_what_is_downstream(
    moved_run: Path, change: dict, first_rules: set[str], allowed_groups: tuple[str, ...]
) -> None:
    jobs = planned_jobs(moved_run, change)
    ran = {job.rule.name for job in jobs}
    assert first_rules <= ran, f"{change}: {sorted(ran)}"
    seeds = {job for job in jobs if job.rule.name in first_rules}
    assert set(jobs) == downstream(jobs, seeds), f"{change} reruns jobs upstream or beside it"
    outside = ran - rules_of(*allowed_groups)
    assert not outside, f"{change} reruns rules outside {allowed_groups}: {sorted(outside)}"


def test_sampling_change_keeps_upstream_and_base_model_jobs(moved_run: Path) -> None:
    ran = {job.rule.name for job in planned_jobs(moved_run, {"consensus": {"samples": 4}})}
    upstream = {
        "ingest_statements",
        "write_paragraphs",
        "generate_questions",
        "translate_questions",
    }
    assert not ran & (upstream | {"build_tiny_chat", "build_tiny_embed", "wvs_polarity"})
    # the adapters' evaluations rerun (their training data changed), the base model's do not
    assert "train_lora" in ran and "blend_generate" in ran


# ---------------------------------------------------------------- bad input


def _edit(path: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def apply(workdir: Path) -> None:
        target = workdir / path
        data = target.read_bytes()
        target.write_bytes(fn(data))

    return apply


def _drop_json_key(key: str) -> Callable[[bytes], bytes]:
    def fn(data: bytes) -> bytes:
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        return "".join(
            json.dumps({k: v for k, v in rec.items() if k != key}) + "\n" for rec in lines
        ).encode()

    return fn


def _drop_csv_column(column: str) -> Callable[[bytes], bytes]:
    def fn(data: bytes) -> bytes:
        df = pl.read_csv(data, infer_schema=False)
        return df.drop(column).write_csv().encode()

    return fn


def _insert_line(n: int, text: bytes) -> Callable[[bytes], bytes]:
    def fn(data: bytes) -> bytes:
        lines = data.splitlines(keepends=True)
        return b"".join([*lines[: n - 1], text + b"\n", *lines[n - 1 :]])

    return fn


CANDLE = "resources/demo/consensus/candle.jsonl"
ATLAS = "resources/demo/consensus/cultureatlas.csv"
MICRODATA = "resources/demo/wvs/microdata.csv"
STATEMENTS = "results/consensus/statements.parquet"

#: (case, how the input is broken, config overrides as YAML, targets, patterns the error shows)
BAD_INPUTS = [
    ("malformed-yaml", None, "seed: [1234\nrun_name: demo\n", [], [r"(?i)yaml|mapping|flow"]),
    ("schema-violation", None, "seed: many\n", [], [r"seed", r"integer"]),
    ("unknown-language", None, "wvs: {languages: [en, xx]}\n", [], [r"wvs\.languages", r"xx"]),
    (
        "missing-source-file",
        None,
        "consensus: {sources: [{format: candle, path: resources/demo/none.jsonl}]}\n",
        [],
        [r"consensus\.sources", r"none\.jsonl"],
    ),
    (
        "model-path-missing",
        None,
        "consensus: {generator: ./no/such/model}\n",
        [],
        [r"consensus\.generator", r"no/such/model"],
    ),
    (
        "model-spec-unknown",
        None,
        "consensus: {generator: 'builtin:no-such-model'}\n",
        [],
        [r"consensus\.generator", r"no-such-model"],
    ),
    (
        "translator-not-configured",
        None,
        "translator: {kind: google}\n",
        [],
        [r"translator\.kind", r"GOOGLE_API_KEY"],
    ),
    (
        "source-missing-column",
        _edit(CANDLE, _drop_json_key("combined_score")),
        "",
        [STATEMENTS],
        [r"candle\.jsonl", r"combined_score"],
    ),
    (
        "source-empty",
        _edit(ATLAS, lambda data: b""),
        "",
        [STATEMENTS],
        [r"cultureatlas\.csv", r"empty"],
    ),
    (
        "source-not-utf8",
        _edit(CANDLE, _insert_line(2, b'{"subject": "Gr\xe8ce"}')),
        "",
        [STATEMENTS],
        [r"candle\.jsonl", r"UTF-8"],
    ),
    (
        "jsonl-line-not-json",
        _edit(CANDLE, _insert_line(3, b'{"subject": "Greece", ')),
        "",
        [STATEMENTS],
        [r"candle\.jsonl", r"line 3"],
    ),
    (
        "wvs-missing-weight-column",
        _edit(MICRODATA, _drop_csv_column("pwght")),
        "",
        ["results/wvs/polarity.parquet"],
        [r"microdata\.csv", r"pwght"],
    ),
    (
        "blend-annotations-bad-shape",
        _edit("resources/demo/blend/annotations/US_data.json", lambda data: b"[1, 2, 3]\n"),
        "",
        ["results/evaluate/blend/tiny-chat/scores.parquet"],
        [r"US_data\.json"],
    ),
]


@pytest.mark.parametrize(
    ("breaks", "overrides", "targets", "patterns"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_fails_clearly_and_keeps_what_was_built(
    demo_run: Path,
    tmp_path: Path,
    breaks: Callable[[Path], None] | None,
    overrides: str,
    targets: list[str],
    patterns: list[str],
) -> None:
    work = copy_run(demo_run, tmp_path / "project")
    results = work / "results"
    before = snapshot(results)
    args: list[str] = []
    if overrides:
        # a preset is a whole config: the demo config with the case's overrides on top
        (work / "bad.yaml").write_text(overrides, encoding="utf-8")
        args = ["--configfile", "config.yaml", "bad.yaml"]
    may_change: set[str] = set()
    if breaks is not None:
        breaks(work)
        may_change = {
            str(Path(f).relative_to("results"))
            for outputs in planned_jobs(work, targets=targets).values()
            for f in outputs
        }
    # targets first: --configfile takes every value after it
    proc = run_snakemake(work, *targets, *args, check=False, env={"GOOGLE_API_KEY": ""})
    shown = proc.stdout + proc.stderr
    assert proc.returncode != 0, shown[-3000:]
    for pattern in patterns:
        assert re.search(pattern, shown), f"error does not match {pattern!r}:\n{shown[-4000:]}"
    after = snapshot(results)
    assert not set(after) - set(before), "new files after a failed run"
    changed = {f for f in before if after.get(f) != before[f]} - may_change
    assert not changed, f"outputs touched although nothing of theirs changed: {sorted(changed)}"
    assert not leftovers(results)


def test_drop_rate_above_the_limit_fails_the_rule(demo_run: Path, tmp_path: Path) -> None:
    """The demo's parse stage drops unparseable survey answers; a limit below that rate fails."""
    summary = pl.read_parquet(demo_run / "results" / "report" / "drops.parquet")
    parse = summary.filter((pl.col("stage") == "parse") & (pl.col("dropped") > 0))
    assert parse.height, "the demo's parse stage dropped nothing: pick another stage"
    work = copy_run(demo_run, tmp_path / "project")
    (work / "strict.yaml").write_text("wvs: {parse: {max_drop_rate: 0.01}}\n", encoding="utf-8")
    model = parse["group"][0].split("/")[0]
    target = f"results/wvs/parsed/{model}.parquet"
    proc = run_snakemake(work, target, "--configfile", "config.yaml", "strict.yaml", check=False)
    shown = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(
        r"stage 'parse' .* dropped \d+ of \d+ items .* above the configured maximum", shown
    )
    assert not (work / "results" / "wvs" / "parsed" / f"{model}.parquet").exists()


# ---------------------------------------------------------------- interrupt, resume, determinism

#: The consensus data half: sharded sampling and embedding (GPU-class rules) and what follows.
CONSENSUS_TARGETS = [
    "results/consensus/full/train.jsonl",
    "results/consensus/random_selection/train.jsonl",
    "results/consensus/no_region_filter/train.jsonl",
]


def fresh_project(dest: Path, demo_workdir: Path) -> Path:
    """A clean copy of the workflow with the session's built-in models (times kept)."""
    copy_workflow(dest)
    shutil.copytree(demo_workdir / "results" / "models", dest / "results" / "models")
    return dest


def consensus_outputs(workdir: Path) -> dict[str, str]:
    return {f: h for f, h in snapshot(workdir / "results").items() if f.startswith("consensus/")}


def run_and_kill(workdir: Path, sig: int, rule: str) -> dict[str, int]:
    """Start Snakemake on the consensus targets and send `sig` once a `rule` job is running (to
    Snakemake alone for SIGTERM, as a scheduler does; to its whole process group for SIGKILL, as
    when a node dies; on SIGTERM Snakemake lets running jobs finish). Returns the mtimes of the
    shard outputs present once it has stopped."""
    log = (workdir / "interrupted.log").open("w")
    proc = subprocess.Popen(
        [SNAKEMAKE, "--cores", "2", *CONSENSUS_TARGETS],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    deadline = time.monotonic() + 900
    text = ""
    while time.monotonic() < deadline and proc.poll() is None:
        text = (workdir / "interrupted.log").read_text(errors="replace")
        if re.search(rf"^(local)?rule {rule}:", text, flags=re.M):
            break
        time.sleep(0.5)
    assert proc.poll() is None, f"run ended before {rule} started:\n{text[-3000:]}"
    time.sleep(4)  # the job is loading its model
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(sig)
    proc.wait(timeout=300)
    log.close()
    assert proc.returncode != 0
    return {
        str(p.relative_to(workdir)): p.stat().st_mtime_ns
        for p in (workdir / "results" / "consensus").glob("*/shard-*.parquet")
    }


@pytest.fixture(scope="module")
def clean_consensus(tmp_path_factory: pytest.TempPathFactory, demo_workdir: Path) -> Path:
    """A second clean run of the consensus data half, same config and seed as the demo run."""
    work = fresh_project(tmp_path_factory.mktemp("clean") / "project", demo_workdir)
    run_snakemake(work, *CONSENSUS_TARGETS)
    return work


def test_two_clean_runs_are_byte_identical(clean_consensus: Path, demo_run: Path) -> None:
    ours, demo = consensus_outputs(clean_consensus), consensus_outputs(demo_run)
    assert ours and set(ours) <= set(demo)
    assert {f: demo[f] for f in ours} == ours


def test_another_seed_changes_the_samples(
    demo_workdir: Path, demo_run: Path, tmp_path: Path
) -> None:
    work = fresh_project(tmp_path / "project", demo_workdir)
    shard = "results/consensus/responses/shard-0.parquet"
    run_snakemake(work, shard, "--config", "seed=4321")
    ours, demo = pl.read_parquet(work / shard), pl.read_parquet(demo_run / shard)
    assert ours.columns == demo.columns
    assert not ours.equals(demo)


@pytest.mark.parametrize(
    ("sig", "rule"),
    [(signal.SIGTERM, "sample_responses"), (signal.SIGKILL, "embed_responses")],
    ids=["sigterm-during-sampling", "sigkill-during-embedding"],
)
def test_interrupted_run_resumes_to_identical_outputs(
    demo_workdir: Path, demo_run: Path, tmp_path: Path, sig: int, rule: str
) -> None:
    work = fresh_project(tmp_path / "project", demo_workdir)
    shards = run_and_kill(work, sig, rule)
    assert not leftovers(work / "results")
    if sig == signal.SIGKILL:
        # a hard kill leaves Snakemake's lock behind: the README's resume command removes it
        run_snakemake(work, "--unlock")
    run_snakemake(work, *CONSENSUS_TARGETS)
    ours, demo = consensus_outputs(work), consensus_outputs(demo_run)
    assert {f: demo[f] for f in ours} == ours
    assert set(ours) == set(consensus_outputs(demo_run)) & set(ours)
    # shards finished before the interruption are kept, not recomputed
    assert shards, "no shard was finished before the interruption"
    for path, mtime in shards.items():
        assert (work / path).stat().st_mtime_ns == mtime, path


# ---------------------------------------------------------------- secrets and the report


@pytest.fixture(scope="module")
def demo_report(demo_run: Path) -> Path:
    """Snakemake's HTML report of the demo run, built with the fake secrets in the environment."""
    run_snakemake(demo_run, "--report", "results/report.html", env=SECRETS)
    return demo_run / "results" / "report.html"


def test_secrets_reach_no_output_log_or_report(demo_run: Path, demo_report: Path) -> None:
    searched = [
        p
        for root in (demo_run / "results", demo_run / ".snakemake" / "log")
        for p in root.rglob("*")
        if p.is_file()
    ]
    assert demo_report in searched and len(searched) > 100
    for path in searched:
        data = path.read_bytes()
        for name, value in SECRETS.items():
            assert value.encode() not in data, f"{name} leaked into {path}"


def test_report_shows_every_pipelines_drops(demo_run: Path, demo_report: Path) -> None:
    summary = pl.read_parquet(demo_run / "results" / "report" / "drops.parquet")
    assert set(summary["pipeline"]) == {"consensus", "train", "evaluate", "wvs", "alignment"}
    stages = set(summary["stage"])
    assert {"ingest_statements", "generate_questions", "embed_responses", "parse"} <= stages
    assert {"blend_generate", "train_tokenize", "alignment_inputs"} <= stages
    assert (summary["rate"] == summary["dropped"] / summary["total"]).all()
    html = demo_report.read_text(encoding="utf-8")
    assert "Everything the workflow dropped" in html and "drops.tsv" in html


def test_drops_summary_keeps_order_and_rates() -> None:
    a, b = DropCounter("s1", "g"), DropCounter("s2", "h")
    a.seen(4)
    a.drop("empty", 1)
    a.drop("no_list", 2)
    out = drops_summary({"wvs": [a.to_frame()], "consensus": [b.to_frame()]})
    assert out.select("pipeline", "stage", "reason", "dropped", "total").rows() == [
        ("wvs", "s1", "empty", 1, 4),
        ("wvs", "s1", "no_list", 2, 4),
        ("consensus", "s2", "none", 0, 0),
    ]
    assert out["rate"].to_list() == [0.25, 0.5, 0.0]
    assert drops_summary({}).columns == ["pipeline", *a.to_frame().columns, "rate"]
