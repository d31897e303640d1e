"""Saving figures: every figure of the library is a PNG written atomically (never half a file) at
one resolution, without matplotlib's Software stamp so that a rerun writes the same bytes.

Importing this module selects matplotlib's non-interactive Agg backend (jobs have no display);
modules that draw take ``plt`` from here."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from polyculture.io import atomic_path  # noqa: E402

__all__ = ["CAPTION_FONTSIZE", "DPI", "plt", "save_figure"]

#: Resolution of every figure (our choice: sharp in the HTML report at its width, small files).
DPI = 120
#: Font size of a figure's footnote caption (our choice: smaller than tick labels).
CAPTION_FONTSIZE = 7


def save_figure(
    fig: Any, path: str | os.PathLike[str], *, caption: str | None = None, crop: bool = False
) -> None:
    """Write `fig` to `path` as PNG (whatever the name's suffix) at :data:`DPI`, atomically, and
    close it. `caption` is a footnote at the bottom right. The layout is tightened
    (``tight_layout``) unless `crop`, which keeps the layout the caller made and cuts the saved
    image to what is drawn (``bbox_inches='tight'``)."""
    if caption:
        fig.text(0.99, 0.005, caption, ha="right", fontsize=CAPTION_FONTSIZE)
    if not crop:
        fig.tight_layout()
    extra = {"bbox_inches": "tight"} if crop else {}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None}, **extra)
    plt.close(fig)
