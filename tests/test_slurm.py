"""A real single-node Slurm (the ``slurm`` fixture): jobs, MPI under srun, job templates."""

import pytest
from nbtools import ROOT


@pytest.mark.slow
def test_fixture_runs_an_mpi_job(slurm, tmp_path):
    """The fixture's cluster runs a 2-rank mpi4py job under srun --mpi=pmix."""
    script = ("#!/bin/bash\n#SBATCH --ntasks=2 --overcommit\n#SBATCH --output=out-%j.txt\n"
              "srun --mpi=pmix python -c 'from mpi4py import MPI; c = MPI.COMM_WORLD; "
              "print(\"sum\", c.allreduce(c.rank + 1))'\n")
    job = slurm.sbatch(script, cwd=tmp_path)
    assert slurm.wait(job, timeout=120) == "COMPLETED", slurm.describe(job)
    out = slurm.output(job).read_text().split("\n")
    assert out.count("sum 3") == 2, f"expected 'sum 3' from both ranks, got:\n{out}"


@pytest.mark.slow
def test_mpi_job_template_runs_the_sgd_program(slurm, tmp_path):
    """jobs/mpi.sbatch through sbatch: 2 ranks under srun --mpi=pmix, result checked."""
    from test_mpi_script import write_parts

    write_parts(tmp_path)
    job = slurm.sbatch(ROOT / "jobs" / "mpi.sbatch", "--", "data_parallel_sgd.py",
                       "--steps", "5", cwd=tmp_path)
    assert slurm.wait(job, timeout=180) == "COMPLETED", slurm.describe(job)
    out = slurm.output(job)
    assert out.name == f"psml-mpi-{job}.out", f"output file named {out.name}"
    text = out.read_text()
    assert "2 MPI ranks" in text and "rank 1/2" in text, text
    assert "(OK)" in text, f"parallel and serial weights differ:\n{text}"


@pytest.mark.slow
def test_job_options_come_from_the_environment(slurm, tmp_path, monkeypatch):
    """psml.cluster.submit adds PSML_PARTITION; a wrong one is refused with a clear error."""
    from psml import cluster

    for k, v in slurm.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PSML_PARTITION", "debug")
    script = tmp_path / "hello.sbatch"
    script.write_text("#!/bin/bash\n#SBATCH --ntasks=1\n#SBATCH --output=hello-%j.out\n"
                      "echo partition=$SLURM_JOB_PARTITION\n")
    job = cluster.submit(script, cwd=tmp_path)
    assert cluster.wait_for_job(job, timeout=120) == "COMPLETED", slurm.describe(job)
    assert "partition=debug" in (tmp_path / f"hello-{job}.out").read_text()
    monkeypatch.setenv("PSML_PARTITION", "no-such-partition")
    with pytest.raises(cluster.ClusterError, match="sbatch refused the job"):
        cluster.submit(script, cwd=tmp_path)


@pytest.mark.slow
def test_ipyparallel_engines_launched_by_slurm(slurm, monkeypatch):
    """start_cluster(engines="slurm"): the engines run inside a Slurm job and share MPI."""
    from psml import cluster

    for k, v in slurm.env.items():
        monkeypatch.setenv(k, v)
    rc = cluster.start_cluster(2, engines="slurm", timeout=120)
    try:
        rc[:].execute("import os; from mpi4py import MPI; "
                      "r = (MPI.COMM_WORLD.Get_rank(), os.environ.get('SLURM_JOB_ID'))",
                      block=True)
        ranks, jobs = zip(*rc[:]["r"])
    finally:
        cluster.stop_cluster(rc)
    assert sorted(ranks) == [0, 1], f"the engines should be MPI ranks 0 and 1, got {ranks}"
    assert len(set(jobs)) == 1 and jobs[0], f"engines should share one Slurm job, got {jobs}"


@pytest.mark.slow
def test_ipyparallel_job_template(slurm, tmp_path):
    """jobs/ipyparallel.sbatch: controller + srun engines in one job, a driver uses them."""
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import os\nfrom psml.cluster import connect_in_job\n"
        "rc = connect_in_job()\n"
        "print('engines', len(rc.ids), 'squares', rc[:].map_sync(lambda x: x * x, range(4)))\n"
        "rc.shutdown(hub=True)\n")
    job = slurm.sbatch(ROOT / "jobs" / "ipyparallel.sbatch", "--", str(driver), cwd=tmp_path)
    assert slurm.wait(job, timeout=180) == "COMPLETED", slurm.describe(job)
    text = slurm.output(job).read_text()
    assert "engines 2 squares [0, 1, 4, 9]" in text, text


@pytest.mark.parametrize("assignment", ["07-ipyparallel", "08-mpi"])
def test_notebooks_submit_jobs_only_when_the_student_opts_in(assignment):
    """Restart & Run All never submits a Slurm job: every cell that could (submit, Slurm
    engines) checks RUN_SLURM_JOBS, which a cell before it sets to False; files the
    notebook writes go to its scratch/ folder."""
    import json
    import re

    nb = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    flag = next((i for i, src in enumerate(code)
                 if re.search(r"^RUN_SLURM_JOBS = False\b", src, re.M)), None)
    assert flag is not None, f"{assignment}: no cell sets RUN_SLURM_JOBS = False"
    slurm = [i for i, src in enumerate(code)
             if re.search(r"\bsubmit\(|engines=\"slurm\"|wait_for_job\(", src)]
    assert slurm, f"{assignment}: no Slurm cell found (has the notebook changed?)"
    for i in slurm:
        assert i > flag and "if not RUN_SLURM_JOBS" in code[i], (
            f"{assignment}: code cell {i} can submit a job without checking RUN_SLURM_JOBS")
    for i, src in enumerate(code):
        for m in re.finditer(r"(\S+)\.write_(text|bytes)\(|open\([^)]*[\"']w", src):
            assert "SCRATCH" in src[max(0, m.start() - 80):m.end()], (
                f"{assignment}: code cell {i} writes outside scratch/: {m.group(0)}")
