"""`make bench`: run every benchmark in this directory, print a table of ratios and write
benchmarks/results.json. Each benchmark module has `run() -> dict` returning named figures, each
figure a dict with `value`, `unit` and `compares` (what the figure compares).

`run.py bench_x ...` runs only those benchmarks and replaces only their entries in
results.json."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def machine() -> dict:
    """What the figures were measured on."""
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in HERE.glob("bench_*.py"))
    results: dict[str, dict] = {"machine": machine(), "benchmarks": {}}
    path = HERE / "results.json"
    if argv and path.is_file():
        # a run of some benchmarks replaces their entries and keeps the others', each with the
        # machine and time it was measured on (a VM's kernel tag changes between boots, so
        # comparing whole machine descriptions would drop every other entry)
        previous = json.loads(path.read_text(encoding="utf-8"))
        for name, entry in previous.get("benchmarks", {}).items():
            entry.setdefault("machine", previous.get("machine"))
            results["benchmarks"][name] = entry
    failed = []
    started = time.perf_counter()
    for name in names:
        module = importlib.import_module(name)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        try:
            figures = module.run()
        except Exception as exc:  # a failing benchmark is reported, the others still run
            failed.append(name)
            figures = {
                "error": {"value": None, "unit": "", "compares": f"{type(exc).__name__}: {exc}"}
            }
        results["benchmarks"][name] = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": results["machine"],
            "figures": figures,
            "seconds": round(time.perf_counter() - start, 2),
            # 1-minute load averages: above the core count, other work shared the CPUs
            "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
        for key, fig in figures.items():
            value = fig["value"]
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            print(f"{name:<24} {key:<34} {shown:>12} {fig['unit']:<10} {fig['compares']}")
    total = round(time.perf_counter() - started, 1)
    if not argv:
        # the whole harness of this run (what `make bench` costs once installed)
        results["all_benchmarks_seconds"] = total
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{len(names)} benchmark(s) in {total} s; wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
