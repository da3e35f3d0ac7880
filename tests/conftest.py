import sys
from pathlib import Path

# tests/strategies.py and friends are imported as plain modules.
sys.path.insert(0, str(Path(__file__).parent))
