"""Every documented command runs as written: each `snakemake …` command in the README, docs/ and
the headers of the configs and profiles is dry-run (placeholder data for the files a config
names, as tests/test_presets.py does), and each documented `polyculture …` command that needs
no finished run is run. The names a document uses for the user's own config (`my.yaml`,
`my-wvs.yaml`, …) stand for the template the document copies them from (CONFIG_NAMES)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import SNAKEMAKE, copy_workflow

from polyculture.project import add_placeholders, placeholder_env

REPO = Path(__file__).resolve().parents[1]
POLYCULTURE = str(Path(sys.executable).with_name("polyculture"))

#: The user's config in the documents → the config it stands for.
CONFIG_NAMES = {
    "my.yaml": "configs/templates/evaluate.yaml",
    "my-eval.yaml": "configs/templates/evaluate.yaml",
    "my-consensus.yaml": "configs/templates/consensus-own-model.yaml",
    "my-wvs.yaml": "configs/templates/wvs-endpoint.yaml",
    "my-70b.yaml": "configs/templates/evaluate-70b-tp4.yaml",
    "C": "config.yaml",
}
#: Synopsis tokens: a command holding one is a usage line, not a command to run.
SYNOPSIS = re.compile(r"[\[<]|\bCONFIG\b|RESULTS_DIR|\bFILE\b|\bDIR\b|COMMAND|path/to/BLEnD")
#: Commands documented but not dry-runnable, with why.
NOT_RUN = {
    "--report": "writes a report of a finished run",
    "--unlock": "needs a locked directory",
    "--lint": "tests/test_workflow_config.py runs the lint",
    "profiles/slurm-test": "the test cluster's overlay (tests/test_slurm.py)",
}


def documents() -> list[Path]:
    return [
        REPO / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "configs").rglob("*.yaml")),
        *sorted((REPO / "profiles").glob("*/config.yaml")),
        *sorted((REPO / "rules").glob("*.smk")),
    ]


def _commands_in_text(text: str) -> list[str]:
    """Commands in Markdown: lines of fenced code blocks and inline code spans."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        found += _command_lines(block.splitlines())
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        found += _command_lines([" ".join(span.split())])
    return found


def _command_lines(lines: list[str]) -> list[str]:
    """Lines that start a snakemake / polyculture command, `\\` continuations joined and
    trailing comments cut."""
    out, current = [], ""
    for raw in lines:
        line = raw.strip()
        if current:
            current += " " + line.rstrip("\\").strip()
            if not line.endswith("\\"):
                out.append(current)
                current = ""
            continue
        line = re.sub(r"^(\.venv/bin/)", "", line)
        if re.match(r"(snakemake|polyculture) \S", line):
            line = re.sub(r"\s+#\s.*$", "", line)
            if line.endswith("\\"):
                current = line.rstrip("\\").strip()
            else:
                out.append(line)
    return out


def documented_commands() -> dict[str, list[str]]:
    """Command → the documents that hold it."""
    commands: dict[str, list[str]] = {}
    for doc in documents():
        text = doc.read_text(encoding="utf-8")
        if doc.suffix == ".md":
            found = _commands_in_text(text)
        else:  # comment lines of YAML and rule files: `#   snakemake …`
            comments = [m for m in re.findall(r"^#\s{2,}(.*)$", text, flags=re.M)]
            found = _command_lines(comments)
        for command in found:
            commands.setdefault(command, []).append(str(doc.relative_to(REPO)))
    return commands


COMMANDS = documented_commands()
SNAKEMAKE_COMMANDS = sorted(
    c
    for c in COMMANDS
    if c.startswith("snakemake ")
    and not SYNOPSIS.search(c)
    and not any(flag in c for flag in NOT_RUN)
)
POLYCULTURE_COMMANDS = sorted(
    c
    for c in COMMANDS
    if c.startswith("polyculture ")
    and not SYNOPSIS.search(c)
    and (c.endswith(("--help", "--version")) or re.match(r"polyculture check --configfile \S", c))
)


def test_the_documents_hold_the_commands_users_run() -> None:
    """The extraction finds what the README promises (a guard against a parser that finds
    nothing and so tests nothing)."""
    assert (
        "snakemake prefetch --profile profiles/slurm --configfile configs/paper-consensus.yaml"
        in (SNAKEMAKE_COMMANDS)
    )
    assert any("-s /path/to/polyculture/Snakefile" in c for c in SNAKEMAKE_COMMANDS)
    assert any("microdata_path" in c for c in SNAKEMAKE_COMMANDS)  # a `\` continuation
    assert "polyculture check --configfile my.yaml" in POLYCULTURE_COMMANDS
    assert len(SNAKEMAKE_COMMANDS) >= 10 and len(POLYCULTURE_COMMANDS) >= 4


def test_targets_come_before_configfile() -> None:
    """`--configfile` takes several values: a target after it is read as a config file."""
    for command, where in COMMANDS.items():
        args = shlex.split(command)
        if not command.startswith("snakemake ") or "--configfile" not in args:
            continue
        values = []
        for arg in args[args.index("--configfile") + 1 :]:
            if arg.startswith("-"):
                break
            values.append(arg)
        for value in values:
            assert value.endswith((".yaml", ".yml", ".json")) or value in CONFIG_NAMES, (
                f"{command} ({', '.join(where)}): '{value}' after --configfile"
            )


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("documented"))


def _prepare(command: str, work: Path, scratch: Path) -> tuple[list[str], Path]:
    """The command's arguments with the documents' stand-ins made real, and its directory."""
    cwd = work
    if "/path/to/polyculture/Snakefile" in command:
        command = command.replace("/path/to/polyculture/Snakefile", str(work / "Snakefile"))
        cwd = scratch
    placeholder_dir = work / "placeholders"
    command = command.replace("/path/to/", f"{placeholder_dir}/")
    args = shlex.split(command)
    for i, arg in enumerate(args):
        if args[i - 1 : i] == ["--configfile"] or (
            i > 1 and "--configfile" in args[:i] and arg.endswith((".yaml", ".yml"))
        ):
            source = CONFIG_NAMES.get(arg, arg)
            if not (cwd / arg).exists():
                shutil.copy(work / source, cwd / arg)
            add_placeholders(cwd, yaml.safe_load((cwd / arg).read_text(encoding="utf-8")))
    for match in re.findall(rf"{re.escape(str(placeholder_dir))}/\S+?(?=['\"}}\s])", command):
        Path(match).parent.mkdir(parents=True, exist_ok=True)
        Path(match).touch()
    return args, cwd


@pytest.mark.parametrize("command", SNAKEMAKE_COMMANDS)
def test_documented_snakemake_command_dry_runs(
    command: str, workflow: Path, tmp_path: Path
) -> None:
    args, cwd = _prepare(command, workflow, tmp_path)
    env = {**os.environ, **placeholder_env(os.environ), "HF_HUB_OFFLINE": "1"}
    extra = [] if "--cores" in args or "--profile" in args else ["--cores", "2"]
    proc = subprocess.run(
        [SNAKEMAKE, *args[1:], *extra, "-n"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    out = proc.stdout + proc.stderr
    where = ", ".join(COMMANDS[command])
    assert proc.returncode == 0, f"{command} ({where}) failed:\n{out[-3000:]}"
    assert re.search(r"^total\s+\d+$", out, flags=re.M) or "Nothing to be done" in out, out[-2000:]
    assert "workflow specific profile" not in out


@pytest.mark.parametrize("command", POLYCULTURE_COMMANDS)
def test_documented_polyculture_command_runs(command: str, workflow: Path, tmp_path: Path) -> None:
    args, cwd = _prepare(command, workflow, tmp_path)
    env = {**os.environ, **placeholder_env(os.environ)}
    proc = subprocess.run(
        [POLYCULTURE, *args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    where = ", ".join(COMMANDS[command])
    assert proc.returncode == 0, (
        f"{command} ({where}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    )
    assert proc.stdout.strip()
