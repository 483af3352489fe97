"""Synthetic-data throughput benchmark for Horovod data-parallel training (images/s).

Each worker trains a Keras model on one fixed random batch (no input pipeline, so only
compute and the gradient allreduce are measured), in the style of Horovod's own
``tensorflow2_synthetic_benchmark.py``. Run it on N workers::

    horovodrun -np 2 --gloo python -m psml.hvdbench --model cnn --batch-size 64
    python -m psml.hvdbench --model resnet50 --batch-size 32      # one worker, e.g. one GPU

or from Python (what notebooks and ``benchmarks/horovod.py`` do)::

    from psml.hvdbench import measure
    r = measure(np=2, model="cnn", batch_size=64, iterations=20)
    r["img_per_sec_total"], r["img_per_sec_per_worker"]

Timing is best-of-``repeats`` blocks of ``iterations`` steps each (other processes on a
shared machine can only make a block slower). CPU workers use ``PSML_THREADS`` (default 1)
TensorFlow threads each, so N workers on N cores do not fight over cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

MODELS = {
    # name: (input shape, classes) - "mlp"/"cnn" are the MNIST models of unit 09
    "mlp": ((28, 28, 1), 10),
    "cnn": ((28, 28, 1), 10),
    "resnet50": ((224, 224, 3), 1000),  # the lecture's ImageNet model (a GPU workload)
}


def build_model(name: str):
    """The benchmark models: ``mlp`` (784-256-128-10), ``cnn`` (two conv5x5 + pool blocks
    and a dense layer, the course's MNIST CNN), ``resnet50`` (Keras' ResNet-50, random
    weights, 25.6 M parameters)."""
    import tensorflow as tf

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {sorted(MODELS)}")
    shape, classes = MODELS[name]
    L = tf.keras.layers
    if name == "mlp":
        return tf.keras.Sequential([L.Input(shape), L.Flatten(), L.Dense(256, "relu"),
                                    L.Dense(128, "relu"), L.Dense(classes)])
    if name == "cnn":
        return tf.keras.Sequential([
            L.Input(shape), L.Conv2D(32, 5, activation="relu"), L.MaxPooling2D(),
            L.Conv2D(64, 5, activation="relu"), L.MaxPooling2D(), L.Flatten(),
            L.Dense(128, "relu"), L.Dense(classes)])
    return tf.keras.applications.ResNet50(weights=None, input_shape=shape, classes=classes)


def worker(model: str = "cnn", batch_size: int = 64, iterations: int = 10, repeats: int = 3,
           warmup: int = 3, threads: int | None = None) -> dict | None:
    """Run the benchmark in this process as one Horovod worker.

    Returns the result dict on rank 0 (``None`` on other ranks): ``np``, per-worker and
    total images/s (best block), seconds per step, the model's parameter count.
    """
    threads = threads if threads is not None else int(os.environ.get("PSML_THREADS", "1") or 0)
    import tensorflow as tf
    import horovod.tensorflow as hvd

    hvd.init()
    if threads:  # must happen before TensorFlow creates its thread pools
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        tf.config.experimental.set_memory_growth(g, True)
    if gpus:  # one GPU per worker: the local rank picks it
        tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")

    tf.keras.utils.set_random_seed(1234 + hvd.rank())
    net = build_model(model)
    shape, classes = MODELS[model]
    opt = tf.keras.optimizers.SGD(0.01 * hvd.size())
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.random.uniform((batch_size, *shape))
    y = tf.random.uniform((batch_size,), maxval=classes, dtype=tf.int64)

    @tf.function
    def step(first: bool):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, net(x, training=True))
        tape = hvd.DistributedGradientTape(tape)  # averages gradients over the workers
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        if first:  # after the first step the optimizer's slots exist: sync everything
            hvd.broadcast_variables(net.variables, root_rank=0)
            hvd.broadcast_variables(opt.variables(), root_rank=0)
        return loss

    step(True)
    for _ in range(warmup):
        step(False)
    blocks = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iterations):
            loss = step(False)
        loss.numpy()  # wait for the last step
        blocks.append(time.perf_counter() - t0)
    # Every worker's best block; the slowest worker sets the pace of synchronous SGD.
    mine = tf.constant([min(blocks)], tf.float64)
    best = hvd.allgather(mine).numpy()
    if hvd.rank() != 0:
        return None
    step_s = float(best.max()) / iterations
    per_worker = batch_size / step_s
    return {
        "model": model, "np": hvd.size(), "batch_size": batch_size,
        "iterations": iterations, "repeats": repeats, "threads": threads,
        "device": "GPU" if gpus else "CPU", "params": int(net.count_params()),
        "seconds_per_step": step_s,
        "img_per_sec_per_worker": per_worker,
        "img_per_sec_total": per_worker * hvd.size(),
        "controller": "mpi" if hvd.mpi_enabled() else "gloo",
    }


def measure(np: int = 1, model: str = "cnn", batch_size: int = 64, iterations: int = 10,
            repeats: int = 3, warmup: int = 3, threads: int | None = 1,
            controller: str = "gloo", timeout: float = 600) -> dict:
    """Launch the benchmark on ``np`` workers with ``horovodrun`` and return rank 0's dict
    (see :func:`worker`), plus ``wall_s``: the launch's wall time including start-up."""
    from psml.hvdrun import horovodrun

    with tempfile.TemporaryDirectory(prefix="psml-hvdbench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = ["python", "-m", "psml.hvdbench", "--model", model, "--batch-size", batch_size,
               "--iterations", iterations, "--repeats", repeats, "--warmup", warmup,
               "--json", out]
        r = horovodrun(cmd, np=np, controller=controller, threads=threads, timeout=timeout)
        result = json.loads(out.read_text())
    result["wall_s"] = r.seconds
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m psml.hvdbench", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cnn", choices=sorted(MODELS))
    ap.add_argument("--batch-size", type=int, default=64, help="per worker")
    ap.add_argument("--iterations", type=int, default=10, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks (the best counts)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=None,
                    help="TensorFlow threads per worker (default: $PSML_THREADS or 1; 0 = TF's)")
    ap.add_argument("--json", type=Path, help="write rank 0's result here")
    a = ap.parse_args(argv)
    if min(a.batch_size, a.iterations, a.repeats) < 1 or a.warmup < 0:
        ap.error("batch size, iterations and repeats must be >= 1, warmup >= 0")
    try:
        import horovod.tensorflow  # noqa: F401
    except ImportError:
        print("error: Horovod is not installed: run `make lab` (tools/setup.sh builds it)",
              file=sys.stderr)
        return 2
    r = worker(a.model, a.batch_size, a.iterations, a.repeats, a.warmup, a.threads)
    if r is not None:
        print(f"{r['model']} on {r['np']} {r['device']} worker(s), batch {r['batch_size']}/worker: "
              f"{r['img_per_sec_per_worker']:.1f} img/s per worker, "
              f"{r['img_per_sec_total']:.1f} img/s total")
        if a.json:
            a.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
