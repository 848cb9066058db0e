#!/usr/bin/env python3
"""Print the key of the at-the-money NIFTY call of the nearest expiry, from the demo market's truth
file (written by `manage.py simulate_market` while `make run` is running)."""

import json
import os
import sys
from pathlib import Path

path = Path(
    os.environ.get(
        "SIMULATOR_TRUTH_FILE", Path(__file__).resolve().parent.parent / ".run/demo-market-truth.json"
    )
)
symbol = sys.argv[1] if len(sys.argv) > 1 else "NIFTY"
option_type = sys.argv[2] if len(sys.argv) > 2 else "call"
truth = json.loads(path.read_text())
underlying = truth["underlyings"][symbol]
nearest = min(underlying["expiries"].values(), key=lambda e: e["t"])
options = [(key, o) for key, o in nearest["options"].items() if o["type"] == option_type]
key, _ = min(options, key=lambda item: abs(item[1]["strike"] - nearest["forward"]))
print(key)
