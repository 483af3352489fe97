"""Horovod (unit 09): the build, the launcher, the solution's training script on 2 workers
with Gloo and with MPI, and the Slurm job script on a real single-node Slurm."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from psml import hvdrun
from psml.cluster import job_script

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "09-horovod" / "09-horovod.ipynb"
TRAIN_ARGS = ["--epochs", "1", "--train-size", "256", "--batch-size", "32",
              "--warmup-epochs", "1"]


def training_script(dest: Path, name: str = "hvd_train") -> Path:
    """The solution's NAME.py (hvd_train, tf_train), taken from its %%writefile cell."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == name)
    first, body = cell.source.split("\n", 1)
    assert first.strip() == f"%%writefile scratch/{name}.py", first
    path = dest / f"{name}.py"
    path.write_text(body)
    return path


def rank_weights(outdir: Path, workers: int = 2) -> list[list[np.ndarray]]:
    """Every rank's saved weights (weights-rank<R>.npz), after checking that all ranks saved."""
    files = sorted(outdir.glob("weights-rank*.npz"))
    assert [f.name for f in files] == [f"weights-rank{r}.npz" for r in range(workers)], files
    weights = []
    for f in files:
        with np.load(f) as z:
            weights.append([z[k] for k in sorted(z.files, key=lambda s: int(s.split("_")[1]))])
    return weights


def assert_identical(weights) -> None:
    for r, ws in enumerate(weights[1:], 1):
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ws, weights[0]))
        assert diff == 0, f"rank {r}'s weights differ from rank 0's by up to {diff}"


def assert_trained_in_sync(outdir: Path, workers: int = 2) -> None:
    assert_identical(rank_weights(outdir, workers))
    log = json.loads((outdir / "log.json").read_text())
    assert log["size"] == workers, log
    assert (outdir / "checkpoint.h5").is_file(), "rank 0 wrote no checkpoint"


def test_check_build_has_tensorflow_mpi_gloo():
    built = hvdrun.check_build()
    assert built["version"] == [hvdrun.pinned_version()], built
    assert "TensorFlow" in built["frameworks"], built
    assert {"MPI", "Gloo"} <= set(built["controllers"]), built
    info = hvdrun.build_info()
    assert info["mpi"] and info["gloo"] and info["version"] == hvdrun.pinned_version(), info


def test_parse_check_build():
    text = ("Horovod v0.28.1:\n\nAvailable Frameworks:\n    [X] TensorFlow\n    [ ] MXNet\n\n"
            "Available Controllers:\n    [X] MPI\n    [ ] Gloo\n\n"
            "Available Tensor Operations:\n    [X] NCCL\n    [ ] DDL\n")
    assert hvdrun.parse_check_build(text) == {
        "version": ["0.28.1"], "frameworks": ["TensorFlow"], "controllers": ["MPI"],
        "tensor_operations": ["NCCL"]}


def test_doctor_reports_horovod():
    from psml.doctor import OK, horovod

    c = horovod()
    assert c.status == OK, c
    assert hvdrun.pinned_version() in c.detail and "MPI" in c.detail and "Gloo" in c.detail


def test_launcher_rejects_bad_input_and_reports_failures(tmp_path):
    with pytest.raises(ValueError, match="controller"):
        hvdrun.horovodrun(["python", "-c", "pass"], controller="nccl")
    with pytest.raises(ValueError, match="np"):
        hvdrun.horovodrun(["python", "-c", "pass"], np=0)
    with pytest.raises(hvdrun.HorovodRunError, match="exit code") as err:
        hvdrun.horovodrun(["python", "-c", "print('boom-from-worker'); raise SystemExit(3)"],
                          np=1, timeout=120)
    assert "boom-from-worker" in str(err.value), "the workers' output belongs in the error"


def test_sbatch_args_and_launch_env():
    assert hvdrun.sbatch_args(nodes=2, tasks_per_node=4, gpus_per_node=4) == [
        "--nodes=2", "--ntasks-per-node=4", "--job-name=psml-horovod", "--gres=gpu:4"]
    assert "--gres" not in " ".join(hvdrun.sbatch_args(1, 2, 0))
    with pytest.raises(ValueError):
        hvdrun.sbatch_args(nodes=0)
    env = hvdrun.launch_env({"X_TEST": 5}, threads=1)
    assert env["PSML_THREADS"] == "1" and env["X_TEST"] == "5"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_hvdbench_rejects_bad_arguments(capsys):
    from psml.hvdbench import build_model, main

    with pytest.raises(SystemExit):
        main(["--iterations", "0"])
    assert "must be >= 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="choose one of"):
        build_model("vgg")


@pytest.mark.slow
@pytest.mark.parametrize("controller", ["gloo", "mpi"])
def test_two_workers_end_with_identical_weights(controller, tmp_path):
    script = training_script(tmp_path)
    r = hvdrun.horovodrun(["python", script, *TRAIN_ARGS, "--outdir", tmp_path / "out"],
                          np=2, controller=controller, cwd=tmp_path, timeout=600)
    assert "2 worker(s)" in r.stdout, r.stdout[-2000:]
    assert_trained_in_sync(tmp_path / "out")


@pytest.mark.slow
def test_job_script_trains_on_slurm(slurm, tmp_path):
    """jobs/horovod.sbatch on the real single-node Slurm: 2 tasks under srun --mpi=pmix."""
    script = training_script(tmp_path)
    opts = hvdrun.sbatch_args(nodes=1, tasks_per_node=2) + ["--overcommit"]
    job = slurm.sbatch(job_script("horovod"), *opts, "--", str(script), *TRAIN_ARGS,
                       "--outdir", str(tmp_path / "out"), cwd=tmp_path)
    assert slurm.wait(job, timeout=600) == "COMPLETED", slurm.describe(job)
    out = slurm.output(job).read_text()
    assert "2 workers" in out and "2 worker(s)" in out, out[-3000:]
    assert_trained_in_sync(tmp_path / "out")


def test_job_env_from_site_profile(tmp_path):
    """`psml horovod job-env`: the profile's modules, venv and variables, for the job script."""
    text = hvdrun.render_job_env("jsc-like", "gpu", {"PSML_PROJECT": "demo1"})
    assert "Horovod/0.28.1" in text and "CUDA/12" in text, text
    assert "PSML_VENV=/p/project/demo1/psml/venv" in text, text
    assert 'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"' in text, text
    env_file = tmp_path / "job.env"
    env_file.write_text(text)
    r = subprocess.run(["bash", "-c", f"SLURM_CPUS_PER_TASK=3; source {env_file}; "
                        'echo "$PSML_MODULES|$OMP_NUM_THREADS"'], capture_output=True, text=True)
    assert r.stdout.strip().endswith("|3"), r.stdout + r.stderr
    from psml.kernels import ProfileError

    with pytest.raises(ProfileError, match="no variant"):
        hvdrun.render_job_env("local", "gpu")
