"""One helper for every Markdown table the book shows (results, run summaries, benchmarks)."""
from __future__ import annotations

from collections.abc import Sequence


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(header: Sequence[str], rows: Sequence[Sequence[object]], title: str = "", note: str = "") -> str:
    """A Markdown table; every row is padded to the header's width, so reference rows need no hand padding.

    ``title`` goes above the table in bold, ``note`` below it (e.g. the settings shared by every row).
    """
    if any(len(r) > len(header) for r in rows):
        raise ValueError(f"a row is wider than the header ({len(header)} columns)")
    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in [*r, *[""] * (len(header) - len(r))]) + " |" for r in rows]
    if note:
        lines += ["", note]
    return "\n".join(lines)
