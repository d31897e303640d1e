"""The library's boundaries (docs/design.md, "The library's rooms"), checked on the source: every
import statement of src/polyculture, those inside functions too.

- backends (model loading, generation, embedding, translation, API access, chat templates) import
  no pipeline;
- the two pipelines, `consensus` and `wvs`, never import each other;
- nothing in the library imports snakemake (scripts pass plain values in);
- prefetch and logs, which every rule script and the Snakefile load first, import no pipeline.

`make check` runs this file too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "polyculture"
BACKENDS = {
    "models",
    "real_models",
    "llm",
    "embed",
    "translate",
    "api",
    "chat",
    "tiny_models",
    "tiny_corpus",
}
PIPELINES = {"consensus", "wvs", "blend", "general_eval", "train", "compare"}
STARTUP = {"logs", "prefetch", "config_check", "project"}


def room(module: str) -> str:
    """polyculture.<room>[.sub] → room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "polyculture" else ""


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


def test_rooms_exist() -> None:
    rooms = {room(module_name(p)) for p in MODULES}
    assert BACKENDS & rooms and {"consensus", "wvs"} <= rooms, rooms
    unknown = (BACKENDS | PIPELINES | STARTUP) - rooms
    assert not unknown - {"chat", "api"}, f"rooms named here that src/ lacks: {unknown}"


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_import_contracts(path: Path) -> None:
    here = room(module_name(path))
    found = imports(path)
    assert not {m for m in found if m.split(".")[0] == "snakemake"}, "the library imports snakemake"
    used = {room(m) for m in found if m.startswith("polyculture.")} - {here}
    if here in BACKENDS | STARTUP:
        assert not used & PIPELINES, f"{here} imports pipeline(s) {used & PIPELINES}"
    if here == "consensus":
        assert "wvs" not in used, "consensus imports wvs"
    if here == "wvs":
        assert "consensus" not in used, "wvs imports consensus"


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    """The scan finds imports inside functions and resolves relative ones."""
    package = tmp_path / "polyculture" / "consensus"
    package.mkdir(parents=True)
    probe = package / "probe.py"
    probe.write_text("def f():\n    from ..wvs import topics\n    import snakemake.io\n")
    found = imports(probe, tmp_path / "polyculture")
    assert {"polyculture.wvs", "polyculture.wvs.topics", "snakemake.io"} <= found, found
    assert room("polyculture.wvs.topics") == "wvs"
