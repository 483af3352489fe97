#!/usr/bin/env python
"""Data-parallel throughput on this machine, 1 vs 2 CPU workers, for Horovod (MPI and Gloo
controllers) and TensorFlow's own MultiWorkerMirroredStrategy -> results/horovod.json.

Synthetic data (psml.hvdbench: the unit-09 CNN on a fixed random batch, one TensorFlow thread
per worker, same model and batch for all three), best of several timed blocks. Efficiency =
total img/s at 2 workers / (2 x img/s at 1 worker), each against its own 1-worker run. Run by `make bench`; on a busy machine the figure says more about the other
processes than about Horovod, so the load average is recorded with it.
Options via environment: PSML_BENCH_MODEL (cnn), PSML_BENCH_BATCH (64), PSML_BENCH_ITERS (5; best of 20 blocks).
"""
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from psml.hvdbench import CONTROLLERS, measure  # noqa: E402


def main() -> int:
    model = os.environ.get("PSML_BENCH_MODEL", "cnn")
    batch = int(os.environ.get("PSML_BENCH_BATCH", "64"))
    iters = int(os.environ.get("PSML_BENCH_ITERS", "5"))
    load_before = os.getloadavg()
    runs = {}
    for controller in CONTROLLERS:
        for np_ in (1, 2):
            r = measure(np=np_, model=model, batch_size=batch, iterations=iters, repeats=20,
                        threads=1, controller=controller)
            runs[f"{controller}-np{np_}"] = r
            print(f"{controller} np={np_}: {r['img_per_sec_total']:.0f} img/s total "
                  f"({r['img_per_sec_per_worker']:.0f} per worker)")
    import tensorflow as tf

    out = {"benchmark": "synthetic data-parallel training (psml.hvdbench): Horovod MPI, "
                        "Horovod Gloo, tf.distribute.MultiWorkerMirroredStrategy",
           "tensorflow": tf.__version__,
           "model": model, "batch_size_per_worker": batch, "threads_per_worker": 1,
           "cpus": os.cpu_count(), "machine": platform.machine(),
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in os.getloadavg()],
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": runs, "scaling": {}}
    for controller in CONTROLLERS:
        one, two = runs[f"{controller}-np1"], runs[f"{controller}-np2"]
        speedup = two["img_per_sec_total"] / one["img_per_sec_total"]
        out["scaling"][controller] = {"img_per_sec_np1": one["img_per_sec_total"],
                                      "img_per_sec_np2": two["img_per_sec_total"],
                                      "speedup": speedup, "efficiency": speedup / 2}
        print(f"{controller}: speedup {speedup:.2f}, efficiency {speedup / 2:.0%}")
    dest = ROOT / "results" / "horovod.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
