"""Calculator throughput against bare JSON parse+dump of the same lines.

    make bench            # or: .venv/bin/python bench/calculator.py [--lines N] [--repeat R]

Both loops run in this process on one core over the same JSON lines; each
figure is the best of R runs. The baseline is what any JSON-lines tool must
pay (json.loads + json.dumps per line), so the ratio says how much the engine
(validation, rules, ledger) costs beyond that I/O. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from subsidy.contracts.calculator import Simulation
from subsidy.contracts.json_lines import dumps, loads
from subsidy.core.credit_code import CODE_CHARS, complete
from subsidy.core.policy import load_policy

KINDS = ["PLATFORM", "SOLUTION_PROVIDER", "INDUSTRIAL", "SOFTWARE", "SME", "PARK_OPERATOR", "INDUSTRY_ASSOCIATION"]


def _claim(rng: random.Random, n: int) -> tuple[str, dict]:
    pick = rng.randrange(12)
    if pick == 0:
        return "rent", {
            "recognized_key_platform": True,
            "lease_start": "2023-01-01",
            "lease_end": "2023-12-31",
            "rent_paid_fen": rng.randrange(10**9),
        }
    if pick == 1:
        return "purchase", {
            "recognized_key_platform": True,
            "for_own_use": True,
            "purchase_date": "2023-05-01",
            "purchase_price_fen": rng.randrange(10**10),
        }
    if pick == 2:
        return "industry_platform", {
            "platform_id": f"P-{n % 50}",
            "sector": "集成电路",
            "investment_fen": rng.randrange(2 * 10**9),
            "infrastructure_investment_fen": rng.randrange(10**8),
        }
    if pick == 3:
        return "revenue_milestone", {
            "year": 2024,
            "revenue_by_year_fen": {
                "2022": rng.randrange(6 * 10**10),
                "2023": rng.randrange(10**11),
                "2024": rng.randrange(3 * 10**11),
            },
        }
    if pick == 4:
        return "dcmm", {"certificate_id": f"D-{n}", "level": rng.randrange(1, 6)}
    if pick == 5:
        return "cloud_adoption", {
            "provider_credit_code": "913101173AGYGLUY2P",
            "provider_listed_in_directory": True,
            "service_year": 2024,
            "spend_fen": rng.randrange(10**7),
        }
    if pick == 6:
        return "benchmark_recognition", {
            "recognition_id": f"R-{n % 200}",
            "recognition": rng.choice(["national_excellent_scenario", "municipal_demo_scenario"]),
        }
    if pick == 7:
        return "identifier_usage", {
            "identifier_registrations": rng.randrange(2 * 10**6),
            "monthly_avg_resolutions": rng.randrange(2 * 10**5),
        }
    if pick == 8:
        return "innovation_carrier", {
            "carrier_id": f"C-{n % 100}",
            "carrier_type": "key_lab",
            "level": rng.choice(["national", "municipal", "district"]),
        }
    if pick == 9:
        return "jiebang_project", {
            "project_id": f"J-{n % 80}",
            "jiebang_selected": True,
            "total_investment_fen": rng.randrange(2 * 10**9),
        }
    if pick == 10:
        return "integration_certification", {
            "certificate_id": f"I-{n}",
            "version": "2.0",
            "grade": rng.choice(["A", "AA", "AAA"]),
        }
    return "talent_training", {"program_id": f"T-{n}", "training_cost_fen": rng.randrange(10**7)}


def make_lines(count: int, seed: int = 20221122) -> list[str]:
    rng = random.Random(seed)
    codes = [complete("91310117" + "".join(rng.choice(CODE_CHARS) for _ in range(8))) for _ in range(400)]
    lines = []
    for n in range(count):
        key, claim = _claim(rng, n)
        app = {
            "application_id": f"B-{n:07d}" if rng.random() > 0.02 else f"B-{max(0, n - 5):07d}",
            "submitted_on": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            "firm": {
                "credit_code": rng.choice(codes),
                "name": "上海某某工业互联网科技有限公司",
                "kinds": rng.sample(KINDS, 2),
                "registered_in_district": True,
                "tax_registered_in_district": rng.random() > 0.05,
                "independent_legal_person": True,
                "introduced_on": "2022-06-01",
            },
            key: claim,
        }
        lines.append(json.dumps(app, ensure_ascii=False))
    return lines


def bare_json(lines: list[str]) -> int:
    out = [json.dumps(json.loads(line), ensure_ascii=False) for line in lines]
    return len(out)


def calculator(lines: list[str], policy) -> int:
    """What `subsidy simulate` does per line: parse (as the command does), decide, apply, print."""
    simulation = Simulation(policy)
    out = [dumps(simulation.apply(simulation.decide(loads(line)))) for line in lines]
    return len(out)


def best_rate(fn, lines, repeat: int, *args) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(lines, *args)
        best = min(best, time.perf_counter() - start)
    return len(lines) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    policy = load_policy()
    lines = make_lines(args.lines)
    size = sum(len(line.encode()) for line in lines) / len(lines)
    baseline = best_rate(bare_json, lines, args.repeat)
    engine = best_rate(calculator, lines, args.repeat, policy)
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, 1 core")
    print(f"{args.lines} applications, {size:.0f} bytes per line on average, best of {args.repeat}")
    print(f"bare JSON parse+dump       {baseline:>10,.0f} lines/s")
    print(f"subsidy simulate (engine)  {engine:>10,.0f} applications/s   ratio {engine / baseline:.2f}")


if __name__ == "__main__":
    main()
