"""The sweep manifest: what a sweep runs (base config, fixed overrides, runs) and each run's
status. One JSON file in the sweep folder, rewritten atomically after every change."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flowrl.errors import UserError
from flowrl.files import write_atomic

MANIFEST = "manifest.json"
BASE_CONFIG = "base.yaml"
# A run's status: pending (never started), running (started by a sweep that has not seen it
# end: a killed sweep leaves it so), done (exited 0), failed (exited non-zero), interrupted
# (stopped by a Ctrl-C or SIGTERM of the sweep; the attempt records the step it saved).
# Each run also has its identity (a hash of its settings and seed): two names, one run.


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """manifest.json of a sweep folder: {'config', 'overrides', 'grid', 'runs': {name: ...}}.

    'config' is the base config as given (the sweep runs its copy, base.yaml, or the defaults).
    """

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data
        self.names = {run["identity"]: name for name, run in self.runs.items() if "identity" in run}

    @classmethod
    def open(
        cls, directory: Path, *, config: str | None, overrides: list[str], grid: dict
    ) -> Manifest:
        """The folder's manifest (checked to describe the same sweep) or a new one."""
        path = directory / MANIFEST
        if not path.is_file():
            data = {"config": config, "overrides": overrides, "grid": grid, "runs": {}}
            return cls(path, data)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"{path}: not a readable sweep manifest ({err})") from None
        if data.get("overrides") != overrides:
            raise UserError(
                f"{directory} holds a sweep with other --set settings ({data.get('overrides')}): "
                "give this one another --name"
            )
        for key, values in grid.items():  # extending a grid axis or the seeds is fine
            known = data["grid"].setdefault(key, [])
            known.extend(v for v in values if v not in known)
        return cls(path, data)

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        return self.data["runs"]

    def add(self, name: str, overrides: list[str], identity: str) -> str:
        """Adds a run unless the manifest holds its identity; returns the name it is under
        (an earlier run's name when one has the same settings and seed)."""
        known = self.names.get(identity)
        if known is not None:
            return known
        run = self.runs.setdefault(name, {"overrides": overrides, "status": "pending"})
        run.setdefault("attempts", [])
        run["identity"] = identity
        self.names[identity] = name
        return name

    def started(self, name: str, *, resumed: bool) -> None:
        run = self.runs[name]
        run["status"] = "running"
        run["attempts"].append({"started": now(), "resumed": resumed})
        self.save()

    def ended(
        self, name: str, status: str, returncode: int | None, step: int | None = None
    ) -> None:
        """The last attempt ended; `step`: the step an interrupted run saved."""
        run = self.runs[name]
        run["status"] = status
        run["attempts"][-1].update(ended=now(), returncode=returncode)
        if step is not None:
            run["attempts"][-1]["step"] = step
        self.save()

    def finished_elsewhere(self, name: str, step: int) -> None:
        """The run was finished outside the sweep (a --list line run by hand)."""
        self.runs[name].update(status="done", finished_outside={"step": step, "seen": now()})
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.data, indent=1) + "\n")
