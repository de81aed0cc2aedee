"""Writing a results file again without losing what was written by hand.

A script's results file (bench/RESULTS.md, bench/LEVERS.md, ...) is the script's
tables, then sections a person wrote about them: from the first ``## `` heading that
says "by hand" to the end (each such section dated). A new run rewrites the tables
and keeps those sections after them, word for word.

>>> hand_written("# T\\n| 1 |\\n## Notes (written by hand, 2026-12-07)\\nslow\\n")
'## Notes (written by hand, 2026-12-07)\\nslow\\n'
"""

from __future__ import annotations

import os
from pathlib import Path

#: What a hand-written section's heading says.
HAND = "by hand"

KEPT = ("_The sections below were written by hand, each dated; the tables above are "
        "the script's, from its last run._\n")


def hand_written(text: str) -> str:
    """The part of `text` from its first ``## `` heading saying "by hand" ('' if none)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("## ") and HAND in line:
            return "".join(lines[i:])
    return ""


def write(path: Path, generated: str) -> str:
    """Write `generated` to `path` (whole or not at all), followed by the hand-written
    sections of the file there before; returns the text written."""
    path = Path(path)
    kept = hand_written(path.read_text()) if path.exists() else ""
    text = generated.rstrip("\n") + "\n"
    if kept:
        text += "\n" + KEPT + "\n" + kept
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text
