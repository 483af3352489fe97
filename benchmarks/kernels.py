"""Kernel start time: the generated Lmod launcher (kernel.sh) vs a plain ipykernel spec.

Time from ``start_kernel`` to the reply of a first executed cell, as a JupyterLab user waits
for it. The Lmod kernel sources Lmod's init, purges, loads two (small) modulefiles, activates
this venv and execs ipykernel; the plain kernel runs ``python -m ipykernel_launcher``.
Writes results/kernels.json (median, min and all runs per kernel).

    .venv/bin/python benchmarks/kernels.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from psml import kernels  # noqa: E402

LMOD_STATE = ("_ModuleTable", "__LMOD", "LMOD_", "_LMFILES_", "LOADEDMODULES", "BASH_FUNC_")


def first_cell_seconds(name: str, env: dict[str, str]) -> float:
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    km = KernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager())
    t0 = time.perf_counter()
    km.start_kernel(env=env, stderr=subprocess.DEVNULL)  # ipykernel's TCP warning, each start
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        reply = kc.execute_interactive("x = 1", output_hook=lambda msg: None, timeout=120)
        took = time.perf_counter() - t0
        assert reply["content"]["status"] == "ok", reply["content"]
        return took
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="starts per kernel (median reported)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="psml-bench-kernels-") as tmp:
        tmp = Path(tmp)
        mp = tmp / "modulefiles"
        for name, body in {"GCC/12": 'setenv("FAKE_GCC_ROOT", "/opt/gcc/12")\n',
                           "Python/3.11": 'setenv("FAKE_PYTHON", "3.11")\n'}.items():
            (mp / name).parent.mkdir(parents=True, exist_ok=True)
            (mp / f"{name}.lua").write_text(body)
        profile = kernels.parse_profile({
            "modules": ["GCC/12", "Python/3.11"], "environment": sys.prefix,
            "variants": {"cpu": {"display_name": "psml (CPU)"}}}, "bench")
        prefix = tmp / "prefix"
        kernels.install(profile, prefix=prefix)
        plain = prefix / "share/jupyter/kernels/plain"
        plain.mkdir(parents=True)
        (plain / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "plain", "language": "python"}))
        os.environ["JUPYTER_PATH"] = str(prefix / "share/jupyter")
        env = {k: v for k, v in os.environ.items() if not k.startswith(LMOD_STATE)}
        env["MODULEPATH"] = str(mp)
        times: dict[str, list[float]] = {"lmod (psml-cpu)": [], "plain ipykernel": []}
        for _ in range(args.runs):  # interleaved: machine load hits both alike
            times["lmod (psml-cpu)"].append(first_cell_seconds("psml-cpu", env))
            times["plain ipykernel"].append(first_cell_seconds("plain", env))
    result = {
        "what": "seconds from start_kernel to the reply of the first executed cell",
        "runs": args.runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1min": round(os.getloadavg()[0], 2)},
        "kernels": {k: {"median_s": round(statistics.median(v), 3), "min_s": round(min(v), 3),
                        "all_s": [round(x, 3) for x in v]} for k, v in times.items()},
    }
    lm, pl = (result["kernels"][k]["median_s"] for k in times)
    result["lmod_overhead_median_s"] = round(lm - pl, 3)
    out = ROOT / "results" / "kernels.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for k, v in result["kernels"].items():
        print(f"{k:<16} median {v['median_s']:.2f} s  min {v['min_s']:.2f} s")
    print(f"Lmod launcher overhead (median): {result['lmod_overhead_median_s']:+.2f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
