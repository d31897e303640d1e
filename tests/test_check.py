"""`polyculture check`, `--version` and `--help` as a user runs them (a subprocess), and the
same check inside Snakemake: every problem at once, with the key, the rule and the closest valid
values, no traceback."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow, run_snakemake

from polyculture import config_check
from polyculture.project import add_placeholders

POLYCULTURE = str(Path(sys.executable).with_name("polyculture"))
REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [POLYCULTURE, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def demo_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def test_version_and_help_list_every_subcommand() -> None:
    from polyculture.cli import SUBCOMMANDS

    proc = run_cli("--version", cwd=REPO)
    assert proc.returncode == 0 and re.fullmatch(r"polyculture \d+\.\d+\.\d+\S*\n", proc.stdout)
    proc = run_cli("--help", cwd=REPO)
    assert proc.returncode == 0
    assert {"check", "summary", "blend-score", "judge-agreement"} <= set(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        assert re.search(rf"^\s+{re.escape(name)}\b", proc.stdout, flags=re.M), name
    assert len(proc.stdout.splitlines()) <= 40  # one screen


def test_check_of_the_demo_config_summarises_the_run(tmp_path: Path) -> None:
    # from a scratch directory: the bundled resources resolve against the workflow
    proc = run_cli("check", "--configfile", str(REPO / "config.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "OK" in out and "pipelines: consensus, train, evaluate, wvs, alignment" in out
    assert "tiny-chat-full = builtin:tiny-chat + adapter 'full'" in out
    assert "wvs.languages = en, da, pt" in out and "evaluate.blend.countries = US, Greece" in out
    assert "wvs.microdata_path" in out


def test_check_lists_every_problem_with_suggestions(tmp_path: Path, demo_config: dict) -> None:
    bad = copy.deepcopy(demo_config)
    bad["consensus"]["sampels"] = 3
    bad["wvs"]["languages"] = ["en", "gr", "Danish"]
    bad["backend"]["generation"] = "vlm"
    bad["eval_models"][1]["adapter"] = "ful"
    bad["seed"] = "abc"
    proc = run_cli("check", "--configfile", str(write(tmp_path / "bad.yaml", bad)), cwd=REPO)
    assert proc.returncode == 1
    err = proc.stderr
    assert "6 problems" in err, err
    assert "config key 'consensus'" in err and "did you mean 'samples'?" in err
    assert "config key 'wvs.languages'" in err and "'gr'" in err and "el (Greek)" in err
    assert "'Danish'" in err and "da (Danish)" in err
    assert "config key 'backend.generation'" in err and "did you mean 'vllm'?" in err
    assert "config key 'eval_models[1].adapter'" in err and "did you mean 'full'?" in err
    assert "config key 'seed'" in err and "schema rule 'type'" in err
    assert "Traceback" not in err and proc.stdout == ""


def test_check_of_several_files_merges_them_as_snakemake_does(
    tmp_path: Path, demo_config: dict
) -> None:
    overlay = write(tmp_path / "more.yaml", {"wvs": {"languages": ["en", "nl"]}})
    proc = run_cli(
        "check", "--configfile", str(REPO / "config.yaml"), str(overlay), "--print", cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    effective = yaml.safe_load(proc.stdout)
    assert effective["wvs"]["languages"] == ["en", "nl"]
    assert effective["wvs"]["n_prompts"] == demo_config["wvs"]["n_prompts"]  # merged, not replaced
    assert effective["pipelines"]["alignment"] is True  # a default, filled in
    assert effective["wvs"]["country_column"] == "cntry_AN"  # a default inside a section


def test_check_names_yaml_errors_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("seed: 1\nbackend: [unclosed\n", encoding="utf-8")
    proc = run_cli("check", "--configfile", "broken.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert re.search(r"broken\.yaml:3:1: not valid YAML: .*line 2, column 10", proc.stderr)
    assert "Traceback" not in proc.stderr
    proc = run_cli("check", "--configfile", "missing.yaml", cwd=tmp_path)
    assert proc.returncode == 1 and "missing.yaml: config file not found" in proc.stderr
    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 2 and "--configfile" in proc.stderr


def test_language_suggestions() -> None:
    assert config_check.language_suggestions("gr")[0] == "el (Greek)"
    assert config_check.language_suggestions("dk")[0] == "da (Danish)"
    assert config_check.language_suggestions("German")[0] == "de (German)"
    assert config_check.language_suggestions("qq") == [] or all(
        re.fullmatch(r"[a-z]{2} \(.+\)", s) for s in config_check.language_suggestions("qq")
    )


def _without_microdata(config: dict, ground_truth: dict) -> dict:
    cfg = copy.deepcopy(config)
    del cfg["wvs"]["microdata_path"]
    cfg["alignment"]["ground_truth"] = ground_truth
    return cfg


GIVEN_TRUTH = {
    "source": "file",
    "country_path": "gt/ground_truth_every_country.csv",
    "country_languages_path": "gt/country_languages.csv",
}


def test_wvs_needs_microdata_or_a_given_ground_truth(demo_config: dict) -> None:
    neither = _without_microdata(demo_config, {"source": "workflow"})
    problems = config_check.config_problems(neither, SCHEMA, REPO)
    assert [p.key for p in problems] == ["wvs.microdata_path"]
    assert "neither WVS microdata nor a given ground truth" in str(problems[0])
    assert "alignment.ground_truth.source: file" in str(problems[0])
    given = _without_microdata(demo_config, GIVEN_TRUTH)
    assert not config_check.wvs_population_needed(given)
    problems = config_check.config_problems(given, SCHEMA, REPO)
    assert {p.key for p in problems} == {
        "alignment.ground_truth.country_path",
        "alignment.ground_truth.country_languages_path",
    }  # the given files themselves must exist; nothing asks for microdata


def test_workflow_with_given_ground_truth_plans_no_population_stages(
    tmp_path: Path, demo_config: dict
) -> None:
    work = copy_workflow(tmp_path / "wf")
    config = _without_microdata(demo_config, GIVEN_TRUTH)
    add_placeholders(work, config)
    write(work / "given.yaml", config)
    proc = run_snakemake(work, "-n", "--configfile", "given.yaml", timeout=300)
    out = proc.stdout + proc.stderr
    assert "wvs_survey" in out and "alignment_inputs" in out
    assert "wvs_polarity" not in out and "wvs_human_consistency" not in out
    # the same without either: the check's message, first and clean
    write(work / "neither.yaml", _without_microdata(demo_config, {"source": "workflow"}))
    proc = run_snakemake(work, "-n", "--configfile", "neither.yaml", check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key 'wvs.microdata_path': neither WVS microdata nor a given ground truth" in out
    assert "Traceback" not in out and "config_check.py" not in out
    assert not (work / "results").exists()


def test_alignment_sources_are_checked_with_the_rest(demo_config: dict) -> None:
    cfg = copy.deepcopy(demo_config)
    cfg["alignment"]["responses"] = {"source": "file", "path": "", "hub_id": ""}
    cfg["alignment"]["ground_truth"] = {"source": "file"}
    cfg["alignment"]["published"] = "nowhere/published.csv"
    problems = config_check.config_problems(cfg, SCHEMA, REPO)
    messages = {p.key: str(p) for p in problems}
    assert "source 'file' needs a path or a hub_id" in messages["alignment.responses"]
    assert "at least one of country_path" in messages["alignment.ground_truth"]
    assert "country → language table" in messages["alignment.ground_truth.country_languages_path"]
    assert "'nowhere/published.csv' does not exist" in messages["alignment.published"]
