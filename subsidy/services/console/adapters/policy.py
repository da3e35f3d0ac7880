"""The policy versions' texts for the budget page: the register
(policy/versions.yaml, ``SUBSIDY_POLICY_DIR``) read with
``subsidy.core.versions`` and a version's parameter-by-parameter difference
from another by its ``diff`` — the same functions ``subsidy policy diff``
uses, not a copy. Loaded once, when first asked for; the files are the
programme's published policy, not console data."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from subsidy.core.versions import diff, load_policy_root, load_versions


class PolicyVersions:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else None
        self._versions: Any = None
        self._lock = threading.Lock()

    def _register(self) -> Any:
        with self._lock:
            if self._versions is None:
                self._versions = load_versions(self.root or load_policy_root())
            return self._versions

    def listed(self) -> list[tuple[str, str]]:
        """(id, status) of every version the register lists, in its order."""
        register = self._register()
        return [(i, register.entries[i].status) for i in register.ids()]

    def base_of(self, version_id: str) -> str:
        """What a version is compared with by default: its base, else the first adopted version."""
        register = self._register()
        version = register.get(version_id)
        if version.base:
            return str(version.base)
        adopted = [i for i, e in register.entries.items() if e.status == "adopted" and i != version_id]
        return adopted[0] if adopted else version_id

    def changes(self, old_id: str, new_id: str) -> list[Any]:
        register = self._register()
        return diff(register.get(old_id), register.get(new_id))
