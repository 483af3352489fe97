"""TensorFlow's own MultiWorkerMirroredStrategy (unit 09, "beyond Horovod"): TF_CONFIG from
the local launcher and from Slurm (SlurmClusterResolver), and the solution's tf_train.py on 2
workers, locally and as jobs/tf-native.sbatch on the real single-node Slurm."""

import json
import os
import sys
import time

import numpy as np
import pytest
from test_horovod import TRAIN_ARGS, assert_identical, rank_weights, training_script

from psml import tfdist
from psml.cluster import job_script

NATIVE_ARGS = [*TRAIN_ARGS, "--seed", "0"]


def native_scripts(dest):
    """hvd_train.py (tf_train.py imports its given parts) and tf_train.py from the solution."""
    training_script(dest)
    return training_script(dest, "tf_train")


def test_tf_config_names_every_worker_and_this_one():
    assert tfdist.tf_config(["a:1", "b:2"], 1) == {
        "cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    for bad in (-1, 2):
        with pytest.raises(ValueError, match="index"):
            tfdist.tf_config(["a:1", "b:2"], bad)
    with pytest.raises(ValueError, match="empty"):
        tfdist.tf_config([], 0)
    ports = tfdist.free_ports(3)
    assert len(set(ports)) == 3 and all(1024 <= p < 65536 for p in ports), ports


def test_port_base_follows_the_job_id():
    assert tfdist.slurm_port_base({"PSML_TF_PORT_BASE": "9000"}) == 9000
    a = tfdist.slurm_port_base({"SLURM_JOB_ID": "41"})
    b = tfdist.slurm_port_base({"SLURM_JOB_ID": "42"})
    assert a != b and all(20000 <= p < 60000 for p in (a, b)), (a, b)


def test_slurm_tf_config_from_step_variables(monkeypatch):
    """SlurmClusterResolver on a CPU-only node: one port per task, this task's index, no GPU
    variable set (the resolver alone would ask nvidia-smi and fail)."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no nvidia-smi
    for k, v in {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "3",
                 "SLURM_STEP_NODELIST": "nodeb,nodea", "SLURM_STEP_TASKS_PER_NODE": "2,1",
                 "PSML_TF_PORT_BASE": "31000"}.items():
        monkeypatch.setenv(k, v)
    config = tfdist.configure()
    # The resolver sorts hosts; tasks of a node get consecutive ports.
    assert config["cluster"]["worker"] == ["nodea:31000", "nodeb:31000", "nodeb:31001"], config
    assert config["task"] == {"type": "worker", "index": 1}, config
    assert json.loads(os.environ["TF_CONFIG"]) == config
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert tfdist.configure() == config, "an existing TF_CONFIG must be kept"
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert tfdist.configure() is None, "one task: nothing to configure"


def test_launch_stops_the_others_when_a_worker_fails(tmp_path):
    code = ("import json, os, sys, time; i = json.loads(os.environ['TF_CONFIG'])['task']['index']"
            "\nif i == 1: print('boom-from-worker-1'); sys.exit(3)\ntime.sleep(120)")
    t0 = time.perf_counter()
    with pytest.raises(tfdist.TFDistError, match="worker 1 failed with exit code 3") as err:
        tfdist.launch(["python", "-c", code], np=2, timeout=100)
    assert "boom-from-worker-1" in str(err.value)
    assert time.perf_counter() - t0 < 60, "worker 0 should have been stopped, not waited for"
    with pytest.raises(ValueError, match="np"):
        tfdist.launch(["python", "-c", "pass"], np=0)
    r = tfdist.launch(["python", "-c", "import os; print(os.environ['TF_CONFIG'])"], np=2)
    lines = sorted(r.stdout.splitlines())
    configs = [json.loads(line.split(" ", 1)[1]) for line in lines]
    assert [c["task"]["index"] for c in configs] == [0, 1], lines
    assert configs[0]["cluster"] == configs[1]["cluster"], "both workers must see one cluster"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """tf_train.py on 2 local workers (psml.tfdist.launch)."""
    tmp = tmp_path_factory.mktemp("tf-local")
    script = native_scripts(tmp)
    r = tfdist.launch(["python", script, *NATIVE_ARGS, "--outdir", tmp / "out"], np=2,
                      cwd=tmp, timeout=600)
    return tmp / "out", r


@pytest.mark.slow
def test_two_local_workers_end_with_identical_weights(local_run):
    out, r = local_run
    assert "2 worker(s)" in r.stdout, r.stdout[-2000:]
    assert_identical(rank_weights(out))
    assert json.loads((out / "log.json").read_text())["size"] == 2


@pytest.mark.slow
def test_job_script_trains_on_slurm(slurm, tmp_path, local_run):
    """jobs/tf-native.sbatch with 2 tasks: TF_CONFIG from SlurmClusterResolver; the same
    seeds and batches give the local run's weights."""
    script = native_scripts(tmp_path)
    job = slurm.sbatch(job_script("tf-native"), "--nodes=1", "--ntasks-per-node=2",
                       "--overcommit", "--", str(script), *NATIVE_ARGS,
                       "--outdir", str(tmp_path / "out"), cwd=tmp_path)
    assert slurm.wait(job, timeout=600) == "COMPLETED", slurm.describe(job)
    log = slurm.output(job).read_text()
    assert "2 workers" in log and "2 worker(s)" in log, log[-3000:]
    weights = rank_weights(tmp_path / "out")
    assert_identical(weights)
    local = rank_weights(local_run[0])
    diff = max(float(np.abs(a - b).max()) for a, b in zip(weights[0], local[0]))
    assert diff < 1e-6, f"Slurm and local runs differ by up to {diff}: not the same cluster?"
