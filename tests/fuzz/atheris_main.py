"""Run one target of tests/fuzz/targets.py under Atheris (libFuzzer):

    python tests/fuzz/atheris_main.py TARGET [libFuzzer options] CORPUS_DIR...

The subsidy package is instrumented for coverage as it is imported (the
target's setup imports what it exercises); libFuzzer keeps the inputs that
reach new code and mutates them. A crash is saved as ``crash-<sha1>`` under
``-artifact_prefix`` and the process exits non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["subsidy"]):
    from tests.fuzz import targets

    target = targets.TARGETS[sys.argv[1]]
    target.setup()
    for seed in target.seeds():  # imports what the target reaches lazily, instrumented
        target.run(seed)


def main() -> None:
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target.run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
