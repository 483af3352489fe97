"""Synthetic-data throughput benchmark for data-parallel training (images/s): Horovod (MPI or
Gloo controller) and TensorFlow's own MultiWorkerMirroredStrategy, same model and batch.

Each worker trains a Keras model on one fixed random batch (no input pipeline, so only
compute and the gradient allreduce are measured), in the style of Horovod's own
``tensorflow2_synthetic_benchmark.py``. Run it on N workers::

    horovodrun -np 2 --gloo python -m psml.hvdbench --model cnn --batch-size 64
    python -m psml.hvdbench --model resnet50 --batch-size 32      # one worker, e.g. one GPU
    python -m psml.hvdbench --native ...     # as a MultiWorkerMirroredStrategy worker (TF_CONFIG)

or from Python (what notebooks and ``benchmarks/horovod.py`` do)::

    from psml.hvdbench import measure
    r = measure(np=2, model="cnn", batch_size=64, iterations=20)   # controller="gloo"|"mpi"|"native"
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

CONTROLLERS = ("gloo", "mpi", "native")
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
    gpus = _setup_threads_and_gpus(tf, threads, hvd.local_rank())
    tf.keras.utils.set_random_seed(1234 + hvd.rank())
    net = build_model(model)
    shape, classes = MODELS[model]
    opt = tf.keras.optimizers.SGD(0.01 * hvd.size())
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.random.uniform((batch_size, *shape))
    y = tf.random.uniform((batch_size,), maxval=classes, dtype=tf.int64)

    @tf.function
    def step(first: bool = False):
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
    best = _timed_blocks(step, iterations, repeats, warmup)
    # Every worker's best block; the slowest worker sets the pace of synchronous SGD.
    slowest = float(hvd.allgather(tf.constant([best], tf.float64)).numpy().max())
    if hvd.rank() != 0:
        return None
    return _result(model, hvd.size(), batch_size, iterations, repeats, threads, gpus,
                   net.count_params(), slowest / iterations,
                   "mpi" if hvd.mpi_enabled() else "gloo")


def _setup_threads_and_gpus(tf, threads: int, local_rank: int) -> list:
    """One worker's TensorFlow threads (before TF starts its pools) and its own GPU, if any."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        tf.config.experimental.set_memory_growth(g, True)
    if gpus:  # one GPU per worker: the local rank picks it
        tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")
    return gpus


def _timed_blocks(step, iterations: int, repeats: int, warmup: int) -> float:
    """Seconds of the best of ``repeats`` blocks of ``iterations`` steps, after ``warmup``."""
    for _ in range(warmup):
        step()
    blocks = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iterations):
            loss = step()
        float(getattr(loss, "values", [loss])[0])  # wait for the last step
        blocks.append(time.perf_counter() - t0)
    return min(blocks)


def _result(model, size, batch_size, iterations, repeats, threads, gpus, params, step_s,
            controller) -> dict:
    per_worker = batch_size / step_s
    return {"model": model, "np": size, "batch_size": batch_size, "iterations": iterations,
            "repeats": repeats, "threads": threads, "device": "GPU" if gpus else "CPU",
            "params": int(params), "seconds_per_step": step_s,
            "img_per_sec_per_worker": per_worker, "img_per_sec_total": per_worker * size,
            "controller": controller}


def native_worker(model: str = "cnn", batch_size: int = 64, iterations: int = 10,
                  repeats: int = 3, warmup: int = 3, threads: int | None = None) -> dict | None:
    """The benchmark as one worker of a ``tf.distribute.MultiWorkerMirroredStrategy`` (no
    Horovod): ``TF_CONFIG`` from :func:`psml.tfdist.configure`. Same model, batch, optimizer
    and timing as :func:`worker`; returns the result dict on worker 0, None elsewhere."""
    threads = threads if threads is not None else int(os.environ.get("PSML_THREADS", "1") or 0)
    import tensorflow as tf

    from psml.tfdist import configure

    config = configure() or {}
    rank = int(config.get("task", {}).get("index", 0))
    gpus = _setup_threads_and_gpus(tf, threads, 0)  # Slurm/launch give each worker its GPU
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    size = strategy.num_replicas_in_sync
    tf.keras.utils.set_random_seed(1234)
    shape, classes = MODELS[model]
    with strategy.scope():  # variables mirrored; the chief's initial values everywhere
        net = build_model(model)
        opt = tf.keras.optimizers.SGD(0.01 * size)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=tf.keras.losses.Reduction.NONE)
    x = tf.random.uniform((batch_size, *shape))
    y = tf.random.uniform((batch_size,), maxval=classes, dtype=tf.int64)

    def replica_step():
        with tf.GradientTape() as tape:
            # mean over the global batch: the summed gradients are then the average
            loss = tf.reduce_sum(loss_fn(y, net(x, training=True))) / (batch_size * size)
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))  # all-reduce inside
        return loss

    step = tf.function(lambda: strategy.run(replica_step))
    best = _timed_blocks(step, iterations, repeats, warmup)
    # Every worker's best block; the slowest sets the pace of synchronous SGD.
    slowest = strategy.run(lambda: tf.constant([best], tf.float64))
    slowest = float(tf.reduce_max(strategy.gather(slowest, axis=0)))
    if rank != 0:
        return None
    return _result(model, size, batch_size, iterations, repeats, threads, gpus,
                   net.count_params(), slowest / iterations, "native")


def measure(np: int = 1, model: str = "cnn", batch_size: int = 64, iterations: int = 10,
            repeats: int = 3, warmup: int = 3, threads: int | None = 1,
            controller: str = "gloo", timeout: float = 600) -> dict:
    """Launch the benchmark on ``np`` workers and return worker 0's dict (see :func:`worker`),
    plus ``wall_s``: the launch's wall time including start-up. ``controller``: ``"gloo"``
    or ``"mpi"`` (Horovod, through ``horovodrun``), ``"native"`` (TensorFlow's
    MultiWorkerMirroredStrategy, through :func:`psml.tfdist.launch`)."""
    from psml.hvdrun import horovodrun
    from psml.tfdist import launch

    if controller not in CONTROLLERS:
        raise ValueError(f"controller must be one of {CONTROLLERS}, got {controller!r}")
    with tempfile.TemporaryDirectory(prefix="psml-hvdbench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = ["python", "-m", "psml.hvdbench", "--model", model, "--batch-size", batch_size,
               "--iterations", iterations, "--repeats", repeats, "--warmup", warmup,
               "--json", out]
        if controller == "native":
            r = launch([*cmd, "--native"], np=np, threads=threads, timeout=timeout)
        else:
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
    ap.add_argument("--native", action="store_true", help="run as a worker of TensorFlow's "
                    "MultiWorkerMirroredStrategy (TF_CONFIG) instead of Horovod")
    a = ap.parse_args(argv)
    if min(a.batch_size, a.iterations, a.repeats) < 1 or a.warmup < 0:
        ap.error("batch size, iterations and repeats must be >= 1, warmup >= 0")
    if not a.native:
        try:
            import horovod.tensorflow  # noqa: F401
        except ImportError:
            print("error: Horovod is not installed: run `make lab` (tools/setup.sh builds it),"
                  " or measure TensorFlow's own strategy with --native", file=sys.stderr)
            return 2
    run = native_worker if a.native else worker
    r = run(a.model, a.batch_size, a.iterations, a.repeats, a.warmup, a.threads)
    if r is not None:
        print(f"{r['model']} on {r['np']} {r['device']} worker(s), batch {r['batch_size']}/worker: "
              f"{r['img_per_sec_per_worker']:.1f} img/s per worker, "
              f"{r['img_per_sec_total']:.1f} img/s total")
        if a.json:
            a.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
