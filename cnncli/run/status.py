"""What a run is doing, as its ``state.json`` says: one record, written by training and
read by ``cnncli runs`` and by evaluate's "is this run finished" look.

>>> import tempfile, pathlib
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> RunStatus(FAILED, "out of memory").write(run)
>>> RunStatus.read(run)
RunStatus(status='failed', error='out of memory')
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path

from cnncli import files, text
from cnncli.run.rundir import STATE

RUNNING, INTERRUPTED, FAILED, FINISHED = "running", "interrupted", "failed", "finished"
#: The states a run records itself.
STATES = (RUNNING, INTERRUPTED, FAILED, FINISHED)
#: An error is kept to this many characters; on a full disk, to `FULL_DISK_CHARS`: the
#: record rewritten in place then fits one 4 KiB block, whatever its characters (JSON
#: writes one outside ASCII in 6 bytes).
ERROR_CHARS, FULL_DISK_CHARS = 1000, 300


@dataclass(frozen=True)
class RunStatus:
    """`status`: one of `STATES`; `error`: what ended an interrupted or failed run."""

    status: str
    error: str | None = None

    def write(self, run: Path) -> None:
        """Write ``state.json`` whole (a new file renamed into place); on a full disk,
        over the one there: a few hundred bytes need no new space, and a run that
        failed for want of space is not left saying it is running (``killed``)."""
        record = {"status": self.status}
        if self.error is not None:
            record["error"] = text.shorten(self.error, ERROR_CHARS)
        try:
            files.write_json(Path(run) / STATE, record)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not (Path(run) / STATE).is_file():
                raise
            if self.error is not None:
                record["error"] = text.shorten(self.error, FULL_DISK_CHARS)
            with open(Path(run) / STATE, "r+b") as f:
                f.write(json.dumps(record).encode())
                f.truncate()

    @classmethod
    def read(cls, run: Path) -> RunStatus:
        """The status `run` recorded; a `ValueError` saying what is wrong if its
        ``state.json`` is missing, not JSON, or holds no status cnncli writes."""
        data = files.read_json_object(Path(run) / STATE)
        status, error = data.get("status"), data.get("error")
        if status not in STATES:
            raise ValueError(f"{STATE} has no status cnncli writes"
                             + (f" ({status!r})" if status is not None else ""))
        return cls(status, error if isinstance(error, str) else None)
