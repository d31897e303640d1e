"""The library's boundaries, checked on the source: every import statement of src/polyculture,
those inside functions too, against the parts table of docs/design.md ("The library's parts"),
which this file reads, so that the map and the check cannot drift:

- every module belongs to exactly one part, and the module list of docs/design.md names every
  module of src/polyculture (and no module that is gone);
- a module imports only its own part and the parts the table lets it import (so the pipelines,
  `consensus` and `wvs`, never import each other, and the backends import no pipeline);
- nothing in the library imports snakemake (scripts pass plain values in);
- the library has no import cycle;
- the rule files (Snakefile, rules/*.smk) import from the library only its `workflow` part (the
  table names it), and use every name that module re-exports.

`make check` runs this file too."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "polyculture"
DESIGN = REPO / "docs" / "design.md"
RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]


def parts_table(text: str) -> dict[str, tuple[list[str], set[str]]]:
    """part → (module name patterns, parts it may import) from the table between the
    `boundaries:start` / `boundaries:end` markers of docs/design.md."""
    m = re.search(r"<!-- boundaries:start -->(.*?)<!-- boundaries:end -->", text, re.S)
    assert m, f"{DESIGN}: no parts table between <!-- boundaries:start/end --> markers"
    table = {}
    for line in m.group(1).strip().splitlines()[2:]:  # header and its rule
        part, modules, may = (c.strip() for c in line.strip().strip("|").split("|"))
        patterns = [p.strip().replace("\\*", "*") for p in modules.split(",")]
        allowed = {a.strip() for a in may.split(",") if a.strip() not in ("", "—")}
        table[part] = (patterns, allowed)
    return table


def listed_modules(text: str) -> set[str]:
    """Module paths (relative to src/polyculture) that the module list of docs/design.md names."""
    section = text.split("## The library's parts", 1)[1].split("```", 2)[1]
    return set(re.findall(r"^\s+([\w/]+\.py)\b", section, re.M))


def listed_folders(text: str) -> list[str]:
    """Folder patterns the module list names as one line each (`evals/*/`: every benchmark
    folder), whose modules need no line of their own."""
    section = text.split("## The library's parts", 1)[1].split("```", 2)[1]
    return re.findall(r"^\s+([\w/]+/\*/)\s", section, re.M)


TEXT = DESIGN.read_text(encoding="utf-8")
PARTS = parts_table(TEXT)


def top_name(module: str) -> str:
    """polyculture.<name>[.sub] → name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "polyculture" else ""


def part_of(module: str) -> str | None:
    """The part whose patterns match the module's top-level name; None for the package root."""
    name = top_name(module)
    if not name:
        return None
    found = [
        p for p, (patterns, _) in PARTS.items() if any(fnmatch.fnmatch(name, g) for g in patterns)
    ]
    assert len(found) == 1, f"{module}: in {len(found)} parts of {DESIGN} ({found}); expected one"
    return found[0]


def module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, src: Path = SRC) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    name = module_name(path, src)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from polyculture import wvs`
    return out


MODULES = sorted(SRC.rglob("*.py"))
NAMES = {module_name(p): p for p in MODULES}


def has_code(path: Path) -> bool:
    """Whether a module holds more than its docstring (an empty package __init__ is not named)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def test_the_map_names_every_module_and_only_those() -> None:
    actual = {str(p.relative_to(SRC)) for p in MODULES if p.name != "__init__.py" or has_code(p)}
    actual.discard("__init__.py")  # the package root
    folders = listed_folders(TEXT)
    actual = {m for m in actual if not any(fnmatch.fnmatch(m, f"{f}*") for f in folders)}
    listed = listed_modules(TEXT)
    assert not actual - listed, f"modules {DESIGN.name} does not name: {sorted(actual - listed)}"
    assert not listed - actual, (
        f"modules {DESIGN.name} names that src/ lacks: {sorted(listed - actual)}"
    )


def test_every_part_exists_and_every_module_has_one() -> None:
    parts = {part_of(m) for m in NAMES} - {None}
    assert parts == set(PARTS), f"parts without modules: {set(PARTS) - parts}"
    for part, (_, allowed) in PARTS.items():
        assert allowed <= set(PARTS), f"{part} may import unknown parts {allowed - set(PARTS)}"


@pytest.mark.parametrize("path", MODULES, ids=list(map(module_name, MODULES)))
def test_import_contracts(path: Path) -> None:
    here = part_of(module_name(path))
    found = imports(path)
    assert not {m for m in found if m.split(".")[0] == "snakemake"}, "the library imports snakemake"
    if here is None:
        return
    used = {part_of(m) for m in found if top_name(m) and f"polyculture.{top_name(m)}" in NAMES}
    forbidden = used - {here, None} - PARTS[here][1]
    assert not forbidden, (
        f"{here} imports {sorted(forbidden)}; {DESIGN.name} allows {sorted(PARTS[here][1])}"
    )


def import_cycles(names: dict[str, Path], src: Path = SRC) -> list[list[str]]:
    """Groups of modules that import each other, directly or around a circle (Tarjan's strongly
    connected components over every import, those inside functions too)."""
    edges = {
        m: {t for t in imports(p, src) if t in names and t != m and not m.startswith(t + ".")}
        for m, p in names.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles() -> None:
    assert import_cycles(NAMES) == []


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    """The scan finds imports inside functions, resolves relative ones, and finds cycles; the
    table puts a pipeline's import of the other pipeline out of bounds."""
    package = tmp_path / "polyculture" / "consensus"
    package.mkdir(parents=True)
    probe = package / "probe.py"
    probe.write_text("def f():\n    from ..wvs import topics\n    import snakemake.io\n")
    found = imports(probe, tmp_path / "polyculture")
    assert {"polyculture.wvs", "polyculture.wvs.topics", "snakemake.io"} <= found, found
    assert part_of("polyculture.wvs.topics") == "wvs"
    assert "wvs" not in PARTS["consensus"][1] and "consensus" not in PARTS["wvs"][1]
    (tmp_path / "polyculture" / "a.py").write_text("from polyculture import b\n")
    (tmp_path / "polyculture" / "b.py").write_text("def f():\n    import polyculture.a\n")
    pair = {
        m: tmp_path / "polyculture" / f"{m.split('.')[1]}.py"
        for m in ("polyculture.a", "polyculture.b")
    }
    assert import_cycles(pair, tmp_path / "polyculture") == [["polyculture.a", "polyculture.b"]]


def rule_file_imports(text: str) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every polyculture import of a rule file, those indented in a
    function too (a rule file is not Python: its import statements are found by their text)."""
    found = []
    for m in re.finditer(
        r"^[ \t]*from[ \t]+(polyculture[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", text, re.M
    ):
        names = re.sub(r"#[^\n]*", "", m.group(2)).strip("()")
        found.append(
            (m.group(1), [n.split()[0] for n in names.replace("\n", " ").split(",") if n.strip()])
        )
    for m in re.finditer(r"^[ \t]*import[ \t]+(polyculture[\w.]*)", text, re.M):
        found.append((m.group(1), []))
    return found


def workflow_module() -> str:
    """The module the parts table gives the rule files: the `workflow` part's one module."""
    patterns = PARTS["workflow"][0]
    assert len(patterns) == 1 and "*" not in patterns[0], (
        f"{DESIGN.name}: the workflow part must be one module, not {patterns}"
    )
    return f"polyculture.{patterns[0]}"


@pytest.mark.parametrize("path", RULE_FILES, ids=[p.name for p in RULE_FILES])
def test_rule_files_import_only_the_workflow_module(path: Path) -> None:
    allowed = workflow_module()
    for module, _ in rule_file_imports(path.read_text(encoding="utf-8")):
        assert module == allowed, (
            f"{path.relative_to(REPO)} imports {module}; rule files import only {allowed}"
        )


def test_the_workflow_module_reexports_what_the_rule_files_use() -> None:
    import importlib

    module = importlib.import_module(workflow_module())
    used = {
        name
        for path in RULE_FILES
        for _, names in rule_file_imports(path.read_text(encoding="utf-8"))
        for name in names
    }
    exported = set(module.__all__)
    assert used <= exported, f"rule files use names {module.__name__} lacks: {used - exported}"
    assert exported <= used, f"{module.__name__} re-exports unused names: {exported - used}"


def test_the_rule_file_scan_sees_violations() -> None:
    text = (
        "from polyculture.workflow import (\n    ConfigError,  # why\n    hub_items,\n)\n"
        "def f():\n    from polyculture.release import check_repo_id as c\n"
        "import polyculture.errors\n"
    )
    assert rule_file_imports(text) == [
        ("polyculture.workflow", ["ConfigError", "hub_items"]),
        ("polyculture.release", ["check_repo_id"]),
        ("polyculture.errors", []),
    ]
