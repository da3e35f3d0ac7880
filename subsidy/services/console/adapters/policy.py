"""The policy versions' texts for the budget and policy-versions pages: the
register (policy/versions.yaml, ``SUBSIDY_POLICY_DIR``) read with
``subsidy.core.versions``, each version's id, status, dates, citations and
``<id>+<digest>`` (what ``subsidy policy versions`` lists), and a version's
parameter-by-parameter difference from another by its ``diff`` — the same
functions ``subsidy policy diff`` uses, not a copy. Loaded once, when first
asked for; the files are the programme's published policy, not console data."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from subsidy.core.policy import PolicyError
from subsidy.core.versions import diff, load_policy_root, load_versions
from subsidy.services.console.model import PolicyVersionInfo, Unavailable


class PolicyVersions:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else None
        self._versions: Any = None
        self._lock = threading.Lock()

    def _register(self) -> Any:
        with self._lock:
            if self._versions is None:
                try:
                    self._versions = load_versions(self.root or load_policy_root())
                except PolicyError as exc:
                    raise Unavailable(f"政策版本登记表无法读取（{exc}）。") from None
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

    def versions(self) -> list[PolicyVersionInfo]:
        """Every version of the register, in its order, each loaded from its
        files as they are now; one whose files do not load (or changed after
        its adoption) is listed with the reason, naming the file."""
        register = self._register()
        out = []
        for version_id in register.ids():
            entry = register.entries[version_id]
            with self._lock:
                try:
                    version = register.get(version_id)
                except PolicyError as exc:
                    out.append(PolicyVersionInfo(version_id, entry.status, citations=entry.citations, problem=str(exc)))
                    continue
            out.append(
                PolicyVersionInfo(
                    version_id=version_id,
                    status=entry.status,
                    name=version.name,
                    base=version.base or "",
                    effective_from=version.effective_from.isoformat(),
                    effective_until=version.effective_until.isoformat() if version.effective_until else "",
                    policy_version=version.policy.version,
                    citations=tuple(version.citations),
                    retired=tuple(sorted(version.retired.items())),
                    fictional=version.fictional,
                )
            )
        return out
