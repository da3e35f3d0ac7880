"""The annual 名录 (clause 5) from ``policy/directory/<year>.yaml``.

One file per year::

    year: 2024
    title: 2024年度松江区工业互联网平台和解决方案服务商名录
    entries:
      - credit_code: 91310117H2LTFY5G3W
        name: 上海松云工业互联网科技有限公司
        category: PLATFORM            # or SOLUTION_PROVIDER
        cloud_services: true          # offers cloud application services (clause 10)

Loaded and validated once at start-up; a malformed file stops the service
with an error naming the file and the field. A year without a file has no
名录: nobody is listed that year.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from subsidy.core import credit_code as credit_codes
from subsidy.services.intake.model import DirectoryEntry

CATEGORIES = ("PLATFORM", "SOLUTION_PROVIDER")
_FILE = re.compile(r"(\d{4})\.ya?ml\Z")


class DirectoryError(ValueError):
    """A malformed 名录 file; the message names the file and the field."""


def _entry(raw: Any, where: str) -> DirectoryEntry:
    if not isinstance(raw, dict):
        raise DirectoryError(f"{where}: must be a mapping of credit_code, name, category, cloud_services")
    unknown = set(raw) - {"credit_code", "name", "category", "cloud_services"}
    if unknown:
        raise DirectoryError(f"{where}.{sorted(unknown)[0]}: unknown field")
    code = raw.get("credit_code")
    try:
        credit_codes.validate(code)
    except credit_codes.InvalidCreditCode as exc:
        raise DirectoryError(f"{where}.credit_code: not a valid unified social credit code: {exc}") from None
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DirectoryError(f"{where}.name: is required")
    category = raw.get("category")
    if category not in CATEGORIES:
        raise DirectoryError(f"{where}.category: unknown value {category!r}; expected one of {', '.join(CATEGORIES)}")
    cloud = raw.get("cloud_services", False)
    if not isinstance(cloud, bool):
        raise DirectoryError(f"{where}.cloud_services: must be true or false, got {cloud!r}")
    return DirectoryEntry(code, name, category, cloud)


def load_file(path: Path) -> tuple[int, list[DirectoryEntry]]:
    match = _FILE.match(path.name)
    if not match:
        raise DirectoryError(f"{path}: a 名录 file is named <year>.yaml")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DirectoryError(f"{path}: cannot read: {exc}") from None
    if not isinstance(doc, dict):
        raise DirectoryError(f"{path}: must be a mapping with year and entries")
    year = doc.get("year")
    if year != int(match.group(1)):
        raise DirectoryError(f"{path}: year: is {year!r}, but the file name says {match.group(1)}")
    raw_entries = doc.get("entries")
    if not isinstance(raw_entries, list):
        raise DirectoryError(f"{path}: entries: must be a list")
    entries: list[DirectoryEntry] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_entries):
        entry = _entry(raw, f"{path}: entries[{i}]")
        if entry.credit_code in seen:
            raise DirectoryError(f"{path}: entries[{i}].credit_code: {entry.credit_code} is listed twice")
        seen.add(entry.credit_code)
        entries.append(entry)
    return year, entries


class FileDirectory:
    """Directory port over a folder of <year>.yaml files."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DirectoryError(f"{self.folder}: the 名录 folder does not exist")
        self._years: dict[int, list[DirectoryEntry]] = {}
        for path in sorted(self.folder.iterdir()):
            if path.suffix in (".yaml", ".yml"):
                year, entries = load_file(path)
                if year in self._years:
                    raise DirectoryError(f"{path}: year {year} has two files")
                self._years[year] = entries

    def years(self) -> list[int]:
        return sorted(self._years)

    def entries(self, year: int) -> list[DirectoryEntry]:
        return list(self._years.get(year, ()))
