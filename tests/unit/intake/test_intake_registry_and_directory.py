"""The file registry (demo/registry.json), the 名录 loader, configuration,
and the rich error status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subsidy.platform.grpc import status as rich_status
from subsidy.platform.registry import FileRegistry, RegistryDataError
from subsidy.services.intake.adapters.directory import DirectoryError, FileDirectory
from subsidy.services.intake.config import Settings

ROOT = Path(__file__).resolve().parents[3]
DEMO = [json.loads(line) for line in (ROOT / "demo" / "applications.jsonl").read_text().splitlines() if line.strip()]


def test_the_demo_registry_has_every_demo_firm_with_the_same_facts_and_contacts():
    registry = FileRegistry(ROOT / "demo" / "registry.json")
    for application in DEMO:
        sent = application["firm"]
        record = registry.firm(sent["credit_code"])
        assert record is not None, sent["credit_code"]
        firm = record.firm
        assert firm.name == sent["name"]
        assert list(firm.kinds) == sent["kinds"]
        assert firm.registered_in_district == sent["registered_in_district"]
        assert firm.tax_registered_in_district == sent["tax_registered_in_district"]
        assert firm.independent_legal_person == sent["independent_legal_person"]
        assert (firm.introduced_on.isoformat() if firm.introduced_on else None) == sent.get("introduced_on")
        assert record.contacts.email.endswith("@example.cn")
        assert record.contacts.phone and record.contacts.webhook_url.startswith("https://")
    assert len(registry) >= len({a["firm"]["credit_code"] for a in DEMO}) + 2


def test_contacts_never_show_in_a_repr():
    record = FileRegistry(ROOT / "demo" / "registry.json").firm("91310117H2LTFY5G3W")
    assert "example.cn" not in repr(record) and "+86" not in repr(record)


def test_the_demo_directory_lists_exactly_the_providers_the_demo_says_are_listed():
    directory = FileDirectory(ROOT / "policy" / "directory")
    claims = [a["cloud_adoption"] for a in DEMO if "cloud_adoption" in a]
    assert claims
    for claim in claims:
        listed = any(
            e.credit_code == claim["provider_credit_code"] and e.cloud_services
            for e in directory.entries(claim["service_year"])
        )
        assert listed == claim["provider_listed_in_directory"], claim
    assert {2023, 2024, 2025} <= set(directory.years())


def write(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / "directory"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "year: 2024\nentries:\n  - {credit_code: 91310117H2LTFY5G3X, name: A, category: PLATFORM}\n",
            r"2024.yaml: entries\[0\].credit_code: not a valid",
        ),
        (
            "year: 2024\nentries:\n  - {credit_code: 91310117H2LTFY5G3W, name: A, category: BANK}\n",
            r"entries\[0\].category: unknown value 'BANK'",
        ),
        (
            "year: 2024\nentries:\n  - {credit_code: 91310117H2LTFY5G3W, category: PLATFORM}\n",
            r"entries\[0\].name: is required",
        ),
        (
            "year: 2024\nentries:\n  - {credit_code: 91310117H2LTFY5G3W, name: A, category: PLATFORM, cloud_services: yes please}\n",
            r"entries\[0\].cloud_services: must be true or false",
        ),
        ("year: 2023\nentries: []\n", r"2024.yaml: year: is 2023, but the file name says 2024"),
        ("year: 2024\n", r"entries: must be a list"),
        (
            "year: 2024\nentries:\n  - {credit_code: 91310117H2LTFY5G3W, name: A, category: PLATFORM}\n"
            "  - {credit_code: 91310117H2LTFY5G3W, name: A, category: PLATFORM}\n",
            r"entries\[1\].credit_code: 91310117H2LTFY5G3W is listed twice",
        ),
    ],
)
def test_a_malformed_directory_file_is_refused_naming_the_file_and_the_field(tmp_path, text, expected):
    with pytest.raises(DirectoryError, match=expected):
        FileDirectory(write(tmp_path, "2024.yaml", text))


def test_a_malformed_registry_file_is_refused_naming_the_field(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"firms": [{"credit_code": "91310117H2LTFY5G3W", "kinds": ["BANK"]}]}))
    with pytest.raises(RegistryDataError, match=r"firms\[0\]: firm.kinds\[0\]: unknown value 'BANK'"):
        FileRegistry(path)


def test_settings_have_the_documented_defaults_and_read_the_environment():
    d = Settings.from_env({})
    assert (d.kafka_bootstrap, d.grpc_address, d.database_url) == (
        "127.0.0.1:9092",
        "127.0.0.1:50051",
        "sqlite:///var/intake.db",
    )
    assert (d.registry_url, d.registry_file, d.directory_dir) == ("", "demo/registry.json", "policy/directory")
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k:1",
            "SUBSIDY_REGISTRY_URL": "http://r",
            "SUBSIDY_INTAKE_DATABASE_URL": "postgresql://x/y",
            "SUBSIDY_INTAKE_METRICS_ADDRESS": "",
        }
    )
    assert (s.kafka_bootstrap, s.registry_url, s.database_url, s.metrics_address) == (
        "k:1",
        "http://r",
        "postgresql://x/y",
        "",
    )


def test_bad_request_details_round_trip_through_the_status_trailer():
    raw = rich_status.bad_request_details(3, "invalid", [("application.rent.lease_start", "is not a real date")])
    status, violations = rich_status.field_violations([(rich_status.DETAILS_KEY, raw)])
    assert status.code == 3 and status.message == "invalid"
    assert violations == [("application.rent.lease_start", "is not a real date")]
