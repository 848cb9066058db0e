"""Run every benchmark module and print one table: ``python -m benchmarks.run [name ...]``."""

from __future__ import annotations

import importlib
import math
import pkgutil
import sys

import benchmarks
from benchmarks.common import Result


def _modules(selected: list[str]) -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    if selected:
        names = [n for n in names if any(s in n for s in selected)]
    return names


def _format(results: list[Result]) -> str:
    header = f"{'benchmark':<44} {'case':<34} {'n':>10} {'median':>12} {'items/s':>14}  note"
    lines = [header, "-" * len(header)]
    for r in results:
        median = f"{r.median_s * 1e3:.3f} ms" if math.isfinite(r.median_s) else "-"
        rate = f"{r.per_second:,.0f}" if math.isfinite(r.per_second) else "-"
        lines.append(f"{r.benchmark:<44} {r.case:<34} {r.n:>10,} {median:>12} {rate:>14}  {r.note}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    results: list[Result] = []
    for name in _modules(argv):
        module = importlib.import_module(f"benchmarks.{name}")
        results.extend(module.run())
    sys.stdout.write(_format(results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
