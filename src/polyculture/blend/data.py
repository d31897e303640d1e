"""BLEnD's data layout: a country's questions, annotations and prompt templates, and fetching
the release into that layout."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from polyculture.errors import InputError
from polyculture.languages import BLEND_REGIONS, normalize_region

log = logging.getLogger("polyculture.blend")


QUESTION_COLUMNS = ("ID", "Question", "Translation")


PROMPT_COLUMNS = ("id", "English", "Translation")


@dataclass(frozen=True)
class Cluster:
    """One group of equivalent annotator answers and how many annotators gave it."""

    answers: tuple[str, ...]
    en_answers: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class Question:
    """A BLEnD question's annotations: clusters in vote order and the idk counts."""

    qid: str
    clusters: tuple[Cluster, ...]
    idk: int
    no_answer: int
    not_applicable: int

    @property
    def top_count(self) -> int:
        return self.clusters[0].count if self.clusters else 0


def annotations_path(data_dir: str | Path, country: str) -> Path:
    """Path of a country's annotation JSON in a BLEnD directory."""
    return Path(data_dir) / "annotations" / f"{normalize_region(country)}_data.json"


def questions_path(data_dir: str | Path, country: str) -> Path:
    """Path of a country's question CSV in a BLEnD directory."""
    return Path(data_dir) / "questions" / f"{normalize_region(country)}_questions.csv"


def prompts_path(data_dir: str | Path, country: str) -> Path:
    """Path of a country's prompt-template CSV in a BLEnD directory."""
    return Path(data_dir) / "prompts" / f"{normalize_region(country)}_prompts.csv"


def available_countries(data_dir: str | Path) -> list[str]:
    """BLEnD regions with an annotation file in `data_dir`, sorted."""
    folder = Path(data_dir) / "annotations"
    if not folder.is_dir():
        raise InputError(folder, "not a directory; expected BLEnD annotations/{Country}_data.json")
    found = sorted(p.name.removesuffix("_data.json") for p in folder.glob("*_data.json"))
    return [c for c in found if c in BLEND_REGIONS]


def _int_field(value: Any, path: Path, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(path, f"{where}: expected a non-negative integer, got {value!r}")
    return value


def _str_list(value: Any, path: Path, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(path, f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def parse_annotations(data: Any, path: Path) -> dict[str, Question]:
    """Check and convert a country's annotation JSON; errors name the file and question ID.

    Missing idk keys count as 0; clusters are put in vote order (count descending, stable)."""
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object keyed by question ID")
    out: dict[str, Question] = {}
    for qid, entry in data.items():
        if not isinstance(entry, dict):
            raise InputError(path, f"question {qid}: expected an object")
        for key in ("annotations", "idks"):
            if key not in entry:
                raise InputError(path, f"question {qid}: missing key '{key}'")
        anns, idks = entry["annotations"], entry["idks"]
        if not isinstance(anns, list):
            raise InputError(path, f"question {qid}: 'annotations' must be a list")
        if not isinstance(idks, dict):
            raise InputError(path, f"question {qid}: 'idks' must be an object")
        clusters = []
        for i, ann in enumerate(anns):
            where = f"question {qid}, annotation {i}"
            if not isinstance(ann, dict) or not {"answers", "en_answers", "count"} <= set(ann):
                raise InputError(
                    path, f"{where}: expected an object with answers, en_answers, count"
                )
            clusters.append(
                Cluster(
                    answers=_str_list(ann["answers"], path, f"{where}.answers"),
                    en_answers=_str_list(ann["en_answers"], path, f"{where}.en_answers"),
                    count=_int_field(ann["count"], path, f"{where}.count"),
                )
            )
        clusters.sort(key=lambda c: -c.count)
        out[str(qid)] = Question(
            qid=str(qid),
            clusters=tuple(clusters),
            idk=_int_field(idks.get("idk", 0), path, f"question {qid}, idks.idk"),
            no_answer=_int_field(idks.get("no-answer", 0), path, f"question {qid}, idks.no-answer"),
            not_applicable=_int_field(
                idks.get("not-applicable", 0), path, f"question {qid}, idks.not-applicable"
            ),
        )
    return out


def load_annotations(path: str | Path) -> dict[str, Question]:
    """Read a BLEnD annotation file ({Country}_data.json)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "annotation file does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(p, "not valid UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise InputError(p, f"not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    return parse_annotations(data, p)


def read_csv_columns(path: Path, columns: Sequence[str]) -> pl.DataFrame:
    """A CSV file as strings; fails naming the file when it is missing, unreadable or lacks one
    of `columns`."""
    if not path.is_file():
        raise InputError(path, "file does not exist")
    try:
        df = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise InputError(path, f"could not be read as CSV: {exc}") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            path, f"missing column(s) {', '.join(missing)}; expected {', '.join(columns)}"
        )
    return df


def load_questions(path: str | Path) -> pl.DataFrame:
    """Read a BLEnD question file: ID, Question (local), Translation (English), ...; IDs unique."""
    p = Path(path)
    df = read_csv_columns(p, QUESTION_COLUMNS)
    dup = df.filter(pl.col("ID").is_duplicated())["ID"].unique().sort().to_list()
    if dup:
        raise InputError(p, f"duplicate question ID(s): {', '.join(dup[:5])}")
    nulls = df.filter(pl.any_horizontal(pl.col(list(QUESTION_COLUMNS)).is_null()))
    if nulls.height:
        raise InputError(p, f"question {nulls['ID'][0]!r} has an empty ID, Question or Translation")
    return df


def load_prompt_templates(path: str | Path) -> dict[str, tuple[str, str]]:
    """Read a BLEnD prompt file: template id → (English template, local-language template).

    Templates are checked for their {q} slot when used (the release has unused templates
    without one). Where an id occurs twice the first row is used, as the released code does
    (the release lists two Azerbaijani translations of inst-4 and pers-3)."""
    p = Path(path)
    df = read_csv_columns(p, PROMPT_COLUMNS)
    out: dict[str, tuple[str, str]] = {}
    for row in df.iter_rows(named=True):
        if row["id"] in out:
            log.warning("%s: template %r appears again; using its first row", p, row["id"])
            continue
        out[row["id"]] = (row["English"] or "", row["Translation"] or "")
    return out


BLEND_SUBDIRS = ("questions", "annotations", "prompts")


def fetch_blend(
    dataset: str, dest: str | Path, *, revision: str = "main", countries: Sequence[str] = ()
) -> Path:
    """Download the BLEnD release's data/{questions,annotations,prompts} files from a Hugging Face
    dataset repository into `dest` (the local layout) and check the countries' files are there.

    The download goes through the hub client's cache, so a copy prefetched there (on a machine
    with the network) is used offline. Only the release layout is read (the prompt templates are
    part of it); a repository without it fails naming what is missing and how to point the
    workflow at a local copy instead."""
    import shutil

    from huggingface_hub import snapshot_download

    dest = Path(dest)
    patterns = [f"data/{sub}/*" for sub in BLEND_SUBDIRS]
    snapshot = Path(
        snapshot_download(
            repo_id=dataset, repo_type="dataset", revision=revision, allow_patterns=patterns
        )
    )
    for sub in BLEND_SUBDIRS:
        src = snapshot / "data" / sub
        if not src.is_dir():
            raise InputError(
                f"{dataset}@{revision}",
                f"no data/{sub}/ folder: the repository does not hold the BLEnD release "
                "layout (questions/, annotations/, prompts/ under data/); set "
                "evaluate.blend.data_path to a copy of the release's data/ folder "
                "(github.com/nlee0212/BLEnD) or hub_dataset to a repository that holds it",
            )
        shutil.copytree(src, dest / sub, dirs_exist_ok=True)
    for country in countries:
        for path in (
            questions_path(dest, country),
            annotations_path(dest, country),
            prompts_path(dest, country),
        ):
            if not path.is_file():
                raise InputError(
                    f"{dataset}@{revision}", f"{country}: {path.relative_to(dest)} is missing"
                )
    return dest
