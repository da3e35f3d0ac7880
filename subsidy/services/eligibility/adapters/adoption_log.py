"""The adoption audit trail as a file of JSON lines (one event per line:
proposed, adopted, refused; subsidy/core/adoption.py), appended and synced to
disk before the RPC answers, read back at start to rebuild the state.

Where it lives: SUBSIDY_ELIGIBILITY_ADOPTION_LOG, by default
``<SUBSIDY_ELIGIBILITY_DATA_DIR>/adoptions.jsonl``. It is this instance's
record: the adoption holds across its restarts as long as the file does,
and on every instance once the register entry the adoption returns is
recorded in policy/versions.yaml (docs/policy-versions.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class AdoptionLogError(ValueError):
    """The file cannot be read back; the message names the file and the line."""


class AdoptionLog:
    def __init__(self, path: Path):
        self.path = path

    @property
    def where(self) -> str:
        return f"file {self.path}"

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        events = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AdoptionLogError(f"{self.path}: line {number}: not JSON: {exc.msg}") from None
            if not isinstance(event, dict) or "event" not in event:
                raise AdoptionLogError(f"{self.path}: line {number}: event: is required")
            events.append(event)
        return events

    def append(self, event: Mapping[str, Any]) -> None:
        """One line, flushed and synced: written whole before the caller answers."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
