"""The one atomic directory write (io.atomic_dir), the one file hash (io.file_sha256) and the
one figure writer (plots.save_figure)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from polyculture.io import atomic_dir, file_sha256


def test_atomic_dir_replaces_the_target_only_when_the_block_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "out" / "model"
    with atomic_dir(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        (tmp / "a.txt").write_text("one", encoding="utf-8")
    assert (target / "a.txt").read_text(encoding="utf-8") == "one"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("two", encoding="utf-8")
        raise RuntimeError("killed half way")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]  # the old target, untouched
    assert [p.name for p in target.parent.iterdir()] == ["model"]  # no temporary left behind
    with atomic_dir(target, fixed_modes=True) as tmp:
        (tmp / "sub").mkdir(mode=0o700)
        (tmp / "sub" / "c.bin").write_bytes(b"x")
        (tmp / "sub" / "c.bin").chmod(0o600)
    assert sorted(p.name for p in target.rglob("*")) == ["c.bin", "sub"]
    assert (target / "sub").stat().st_mode & 0o777 == 0o755
    assert (target / "sub" / "c.bin").stat().st_mode & 0o777 == 0o644


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 << 20 | 5)  # more than one read block
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_save_figure_writes_the_same_png_bytes_twice(tmp_path: Path) -> None:
    from polyculture.plots import DPI, plt, save_figure

    def draw(path: Path, **kw) -> bytes:
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1, 2], [1, 0, 2])
        save_figure(fig, path, **kw)
        assert not plt.get_fignums()  # closed
        return path.read_bytes()

    a = draw(tmp_path / "a.png", caption="* p < 0.05")
    assert a.startswith(b"\x89PNG") and b"Software" not in a
    assert a == draw(tmp_path / "b.png", caption="* p < 0.05")
    cropped = draw(tmp_path / "c.svg", crop=True)  # PNG whatever the suffix
    assert cropped.startswith(b"\x89PNG")
    from PIL import Image

    with Image.open(tmp_path / "a.png") as im:
        assert im.size == (3 * DPI, 2 * DPI)
