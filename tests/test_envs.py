"""`--sdm conda`: every envs/*.yaml parses, holds only third-party packages (the scripts import
the library from the workflow's own src/, which the Snakefile puts on PYTHONPATH), pins exactly
what pyproject.toml pins, and provides every module that the scripts of its rules import.

No conda channel is reachable here, so the import check builds no environment: it runs the
imports of each rule group's scripts in a fresh interpreter of the project's venv whose import
system refuses every top-level module that neither the standard library, this workflow's src/,
Snakemake's script preamble, nor the distributions of the env's pip list (with their own
requirements, from the installed metadata) provide. A module missing from an env fails its
import there exactly as it would in the conda environment."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))


def env_requirements(path: Path) -> list[Requirement]:
    env = yaml.safe_load(path.read_text(encoding="utf-8"))
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    return [Requirement(line) for line in pip]


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    reqs = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in reqs}


def rule_scripts() -> dict[str, set[str]]:
    """env file name → the scripts of the rules that use it (from rules/*.smk)."""
    out: dict[str, set[str]] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M):
            env = re.search(r'conda:\s*\n\s*"\.\./envs/([\w-]+\.yaml)"', block)
            script = re.search(r'script:\s*\n\s*"\.\./scripts/([\w-]+\.py)"', block)
            if env and script:
                out.setdefault(env.group(1), set()).add(script.group(1))
    return out


def script_imports(script: Path) -> set[str]:
    """Modules a script imports (absolute imports, any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("env", ENVS, ids=[p.stem for p in ENVS])
def test_env_parses_and_holds_only_third_party_packages(env: Path) -> None:
    data = yaml.safe_load(env.read_text(encoding="utf-8"))
    assert data["channels"] and "python=3.11" in data["dependencies"], env
    reqs = env_requirements(env)
    assert reqs, env
    names = {canonicalize_name(r.name) for r in reqs}
    assert "polyculture" not in names
    text = env.read_text(encoding="utf-8")
    assert not re.search(r"^\s*- (-e|\.|/)", text, flags=re.M), "a local path in " + env.name


@pytest.mark.parametrize("env", ENVS, ids=[p.stem for p in ENVS])
def test_env_pins_agree_with_pyproject(env: Path) -> None:
    project = pyproject_requirements()
    for req in env_requirements(env):
        name = canonicalize_name(req.name)
        assert name in project, f"{env.name}: {req.name} is not a dependency in pyproject.toml"
        assert req.specifier == project[name].specifier, (
            f"{env.name}: {req} but pyproject.toml says {project[name]}"
        )


def test_every_env_is_used_and_every_script_rule_has_one() -> None:
    used = rule_scripts()
    assert set(used) == {p.name for p in ENVS}, set(used) ^ {p.name for p in ENVS}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M):
            if re.match(r"rule \w+:", block) and "script:" in block:
                assert "conda:" in block, f"{smk.name}: {block.splitlines()[0]} has no conda env"


CHECK = r"""
import importlib, importlib.abc, importlib.metadata as md, json, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

wanted, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
dists, todo = set(), [Requirement(r) for r in wanted]
while todo:
    req = todo.pop()
    name = canonicalize_name(req.name)
    if name in dists or (req.marker and not req.marker.evaluate({"extra": ""})):
        continue
    dists.add(name)
    try:
        todo += [Requirement(r) for r in (md.distribution(name).requires or [])]
    except md.PackageNotFoundError:
        pass
provided = {
    mod for mod, ds in md.packages_distributions().items()
    if any(canonicalize_name(d) in dists for d in ds)
}
allowed = provided | set(sys.stdlib_module_names) | {"polyculture", "snakemake", "_distutils_hack"}

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in allowed and not top.startswith("_"):
            raise ModuleNotFoundError(f"No module named {top!r} in this environment", name=top)
        return None

sys.meta_path.insert(0, Refuse())
failed = []
for module in modules:
    try:
        importlib.import_module(module)
    except ImportError as e:
        failed.append(f"{module}: {e}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


@pytest.mark.parametrize("env", ENVS, ids=[p.stem for p in ENVS])
def test_env_provides_what_its_scripts_import(env: Path) -> None:
    scripts = rule_scripts()[env.name]
    modules = set().union(*(script_imports(REPO / "scripts" / s) for s in scripts))
    modules.discard("__future__")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CHECK,
            json.dumps([str(r) for r in env_requirements(env)]),
            json.dumps(sorted(modules)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, (
        f"{env.name} lacks what the scripts {sorted(scripts)} import:\n{proc.stdout}{proc.stderr[-3000:]}"
    )


@pytest.mark.workflow
def test_scripts_import_the_workflows_own_src(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The Snakefile puts the workflow's src/ first for the scripts: a copy whose library differs
    from the installed one runs its own (here: a log format with a marker), with no PYTHONPATH
    from the caller and with Snakemake's conda-style blocking of search paths turned off as the
    profiles do."""
    from conftest import copy_workflow, run_snakemake

    work = copy_workflow(tmp_path_factory.mktemp("own-src"))
    logs_py = work / "src" / "polyculture" / "logs.py"
    text = logs_py.read_text(encoding="utf-8")
    marked = text.replace('FORMAT = "%(asctime)s', 'FORMAT = "OWN-SRC %(asctime)s', 1)
    assert marked != text
    logs_py.write_text(marked, encoding="utf-8")
    run_snakemake(work, "results/wvs/polarity.parquet", env={"PYTHONPATH": ""}, timeout=600)
    (log,) = (work / "results" / "logs" / "wvs_polarity").glob("*.log")
    assert log.read_text().startswith("OWN-SRC "), log.read_text()[:500]
