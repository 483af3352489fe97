"""Data-parallel training with TensorFlow's own ``MultiWorkerMirroredStrategy`` (no Horovod).

A worker learns who it is from ``TF_CONFIG`` (JSON: every worker's ``host:port`` and its
own index). This module writes it, in two places:

* **outside Slurm** (a laptop, a notebook, CI): :func:`launch` starts N worker processes on
  this machine, each with its own ``TF_CONFIG`` on free local ports::

      from psml.tfdist import launch
      r = launch(["python", "tf_train.py", "--epochs", "1"], np=2)
      print(r.stdout)

* **inside a Slurm job step** (``srun``, see ``jobs/tf-native.sbatch``): the training script
  calls :func:`configure` before it creates the strategy; it builds ``TF_CONFIG`` from
  Slurm's variables with TensorFlow's ``SlurmClusterResolver``::

      from psml.tfdist import configure
      configure()                                        # TF_CONFIG from Slurm, if in a step
      strategy = tf.distribute.MultiWorkerMirroredStrategy()

The environment, the command and the error messages are those of :mod:`psml.hvdrun`
(:mod:`psml.workers`), so both launchers behave alike.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

from psml.errors import PsmlError
from psml.workers import launch_env, tail, worker_command


class TFDistError(PsmlError, RuntimeError):
    """A native-strategy launch failed; the message holds the command and the workers' output."""


def tf_config(workers: Sequence[str], index: int) -> dict:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of ``workers`` (``host:port`` each);
    worker 0 is the chief (it writes logs and checkpoints)."""
    workers = [str(w) for w in workers]
    if not workers:
        raise ValueError("workers is empty: pass one host:port per worker")
    if not 0 <= index < len(workers):
        raise ValueError(f"index must be in 0..{len(workers) - 1}, got {index}")
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": int(index)}}


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports that were free a moment ago (all held open while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def slurm_port_base(env: Mapping[str, str] | None = None) -> int:
    """First port of a job's workers: ``PSML_TF_PORT_BASE`` if set, else one derived from
    ``SLURM_JOB_ID`` (two jobs sharing a node then rarely collide, unlike a fixed 8888)."""
    env = os.environ if env is None else env
    if env.get("PSML_TF_PORT_BASE", "").strip():
        return int(env["PSML_TF_PORT_BASE"])
    return 20000 + (int(env.get("SLURM_JOB_ID", "0") or 0) * 16) % 40000


def slurm_tf_config(port_base: int | None = None) -> dict:
    """``TF_CONFIG`` for this task of a Slurm job step, from ``SlurmClusterResolver``.

    On CPU-only nodes the resolver would ask ``nvidia-smi`` for GPUs (and fail without it);
    then it is told one (unused) device per task and leaves ``CUDA_VISIBLE_DEVICES`` alone.
    With GPUs it gives each task its own (sets ``CUDA_VISIBLE_DEVICES``), as for Horovod.
    """
    import tensorflow as tf

    SlurmClusterResolver = tf.distribute.cluster_resolver.SlurmClusterResolver
    if "SLURM_STEP_NUM_TASKS" not in os.environ or "SLURM_PROCID" not in os.environ:
        raise TFDistError("not inside a Slurm job step (no SLURM_STEP_NUM_TASKS/SLURM_PROCID):"
                          " start the workers with srun (jobs/tf-native.sbatch), or use "
                          "psml.tfdist.launch() on one machine")
    port_base = slurm_port_base() if port_base is None else port_base
    gpus = bool(os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() or shutil.which("nvidia-smi"))
    if gpus:
        resolver = SlurmClusterResolver(port_base=port_base)
    else:
        from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import (
            expand_tasks_per_node)

        per_node = max(expand_tasks_per_node(os.environ["SLURM_STEP_TASKS_PER_NODE"]))
        resolver = SlurmClusterResolver(port_base=port_base, gpus_per_node=per_node,
                                        gpus_per_task=1, auto_set_gpu=False)
    spec = resolver.cluster_spec().as_dict()
    return {"cluster": spec, "task": {"type": resolver.task_type, "index": resolver.task_id}}


def configure(port_base: int | None = None) -> dict | None:
    """Set ``TF_CONFIG`` for this process before the strategy is created, and return it.

    Inside a Slurm job step with more than one task: from Slurm (:func:`slurm_tf_config`).
    A ``TF_CONFIG`` already set (by :func:`launch`, or by you) is kept. Otherwise (one
    process, no Slurm) nothing is set and None returned: the strategy then trains alone.
    """
    if os.environ.get("TF_CONFIG", "").strip():
        return json.loads(os.environ["TF_CONFIG"])
    os.environ.pop("TF_CONFIG", None)  # an empty one would make TensorFlow fail to parse it
    if int(os.environ.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1:
        config = slurm_tf_config(port_base)
        os.environ["TF_CONFIG"] = json.dumps(config)
        return config
    return None


def launch(command: Sequence, np: int = 2, threads: int | None = 1,
           env: Mapping[str, str] | None = None, timeout: float = 600,
           cwd: str | Path | None = None, echo: bool = False) -> subprocess.CompletedProcess:
    """Run ``command`` as ``np`` workers of one ``MultiWorkerMirroredStrategy`` on this machine.

    Each worker gets ``TF_CONFIG`` (its index, everyone's local port) and the environment of
    :func:`psml.workers.launch_env` (``threads`` TensorFlow threads each). Returns a finished
    process whose ``.stdout`` holds every worker's output, each line prefixed ``[i]``, and
    ``.seconds`` the wall time. When a worker fails, the others are stopped (they would wait
    for it forever) and :class:`TFDistError` shows its output; likewise after ``timeout`` s.
    """
    if int(np) < 1:
        raise ValueError(f"np must be a positive number of workers, got {np!r}")
    command = worker_command(command)
    workers = [f"localhost:{p}" for p in free_ports(int(np))]
    base = launch_env(env, threads)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="psml-tfdist-") as tmp:
        logs = [open(Path(tmp) / f"worker{i}.log", "w+") for i in range(int(np))]
        procs = [subprocess.Popen(command, cwd=cwd, stdout=logs[i], stderr=subprocess.STDOUT,
                                  env={**base, "TF_CONFIG": json.dumps(tf_config(workers, i))})
                 for i in range(int(np))]
        failed = _wait_all(procs, t0 + timeout)
        outputs = []
        for f in logs:
            f.seek(0)
            outputs.append(f.read())
            f.close()
    text = "".join(f"[{i}] {line}\n" for i, out in enumerate(outputs)
                   for line in out.splitlines())
    seconds = time.perf_counter() - t0
    if failed is not None:
        i, why = failed
        raise TFDistError(f"{' '.join(command)} on {np} workers: worker {i} {why}; the other "
                          f"workers were stopped. Its last output:\n{tail(outputs[i])}")
    r = subprocess.CompletedProcess(command, 0, stdout=text)
    r.seconds = seconds
    if echo:
        print(text, end="")
    return r


def _wait_all(procs, deadline: float):
    """Wait for every process; None when all exit 0, else (index, what happened) of the first
    failure after stopping the rest."""
    failed = None
    while failed is None and any(p.poll() is None for p in procs):
        for i, p in enumerate(procs):
            if p.poll() not in (None, 0):
                failed = (i, f"failed with exit code {p.returncode}")
                break
        else:
            if time.perf_counter() > deadline:
                failed = (next(i for i, p in enumerate(procs) if p.poll() is None),
                          "was still running at the time limit")
            time.sleep(0.05)
    if failed is None:
        bad = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
        failed = (bad[0][0], f"failed with exit code {bad[0][1]}") if bad else None
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    return failed
