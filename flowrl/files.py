"""Files written atomically: a reader sees the old contents or the new, never half of them."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | bytearray | memoryview | str) -> None:
    """Writes `data` (text as UTF-8) to `.NAME.PID.tmp` beside `path`, fsyncs it, then renames
    it over `path`. A failed write (an OSError, e.g. a full disk) leaves the previous file at
    `path` and no temporary."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as file:
            file.write(data.encode() if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
