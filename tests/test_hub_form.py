"""The Slurm spawner's pure parts: [hub.slurm] profiles, the workshop form, the job script.

No hub, no Slurm: tests/test_hub_slurm.py spawns through both.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from psml import kernels
from psml.hub import form, jobscript

SLURM = {
    "accounts": ["training2401", "other"],
    "reservation": "psml-ws",
    "runtime": 30,
    "cores": 1,
    "modules": ["psml"],
    "modulepath": ["/shared/modulefiles"],
    "kernel": "psml-mpi",
    "partitions": {"batch": {"max_cores": 4, "max_runtime": 120},
                   "develgpus": {"max_cores": 8, "gpus": 2, "max_runtime": 60}},
}


@pytest.fixture
def hub() -> kernels.SlurmSettings:
    return kernels.parse_slurm(SLURM, "t.toml")


def profile_with(**slurm) -> dict:
    data = json.loads(json.dumps(SLURM))
    data.update(slurm)
    return {"environment": "/opt/venv", "variants": {"mpi": {}}, "hub": {"slurm": data}}


# --- the profile's [hub.slurm] table ------------------------------------------------------

@pytest.mark.parametrize("site", ["jsc-like", "generic-slurm"])
def test_hpc_profiles_offer_the_hub_through_slurm(site):
    p = kernels.load_profile(site)
    assert p.slurm is not None, f"{site} should have a [hub.slurm] table"
    assert p.slurm.modules == ("psml",), "the job should load the course module"
    assert any(q.gpus for q in p.slurm.partitions.values()), "a GPU partition is offered"
    assert p.slurm.reservation.startswith("${PSML_RESERVATION"), p.slurm.reservation


@pytest.mark.parametrize("change, field, reason", [
    ({"partitions": {}}, "hub.slurm.partitions", "at least one partition"),
    ({"partitions": {"batch": {"max_cores": 0}}}, "hub.slurm.partitions.batch.max_cores",
     ">= 1"),
    ({"partitions": {"bat ch": {}}}, "hub.slurm.partitions.bat ch", "partition name"),
    ({"partitions": {"batch": {"gpu": 1}}}, "hub.slurm.partitions.batch.gpu",
     "unknown field"),
    ({"reservation": "ws;rm -rf"}, "hub.slurm.reservation", "not a Slurm name"),
    ({"accounts": "training"}, "hub.slurm.accounts", "must be a list"),
    ({"accounts": ["$(id)"]}, "hub.slurm.accounts[0]", "'$' is only allowed"),
    ({"modules": ["psml; id"]}, "hub.slurm.modules[0]", "not a module name"),
    ({"cores": 9}, "hub.slurm.partitions.batch", "exceed its max_cores"),
    ({"runtime": "1h"}, "hub.slurm.runtime", "whole number"),
    ({"kernel": "psml MPI"}, "hub.slurm.kernel", "not a kernel name"),
    ({"reservaton": "x"}, "hub.slurm.reservaton", "unknown field"),
])
def test_bad_slurm_tables_name_the_field(change, field, reason):
    with pytest.raises(kernels.ProfileError) as exc:
        kernels.parse_profile(profile_with(**change), "testsite", "t.toml")
    msg = str(exc.value)
    assert f"field '{field}'" in msg and reason in msg, f"expected {field!r} / {reason!r}: {msg}"


def test_placeholders_are_filled_by_install_vars_and_by_the_hubs_environment():
    from psml.hub.slurm import resolve

    p = kernels.parse_profile(profile_with(reservation="${PSML_RESERVATION:-}",
                                           accounts=["${PSML_PROJECT}"]), "s")
    filled = kernels.substitute(p, {"PSML_PROJECT": "training2401"})
    assert filled.slurm.accounts == ("training2401",)
    assert resolve(p.slurm.reservation, {}) == "", "an unset reservation means none"
    assert resolve(p.slurm.reservation, {"PSML_RESERVATION": "ws1"}) == "ws1"
    with pytest.raises(kernels.ProfileError, match="PSML_PROJECT"):
        resolve(p.slurm.accounts[0], {})


# --- the form ----------------------------------------------------------------------------

def test_defaults_preselect_the_reservation_first_account_and_partition(hub):
    d = form.defaults(hub)
    assert (d.account, d.partition, d.reservation, d.runtime, d.cores, d.gpus) == \
        ("training2401", "batch", "psml-ws", 30, 1, 0)
    html = form.render(hub)
    assert '<option value="psml-ws" selected>' in html, "reservation not preselected"
    assert '<option value="batch" selected' in html
    assert 'name="cores" value="1" min="1" max="4"' in html


def test_form_data_and_rest_options_give_the_same_request(hub):
    from_form = form.validate(hub, {"partition": ["develgpus"], "cores": ["8"], "gpus": ["2"],
                                    "runtime": ["45"], "account": ["other"],
                                    "reservation": [""]})
    from_api = form.validate(hub, {"partition": "develgpus", "cores": 8, "gpus": 2,
                                   "runtime": 45, "account": "other", "reservation": ""})
    assert from_form == from_api
    assert from_form.sbatch_options() == [
        "--partition=develgpus", "--time=45", "--ntasks=8", "--cpus-per-task=1",
        "--account=other", "--gres=gpu:2"]
    assert form.validate(hub, {}) == form.defaults(hub), "missing fields take the defaults"


@pytest.mark.parametrize("raw, says", [
    ({"partition": "gpus"}, "partition: 'gpus' is not offered; choose 'batch', 'develgpus'"),
    ({"cores": 64}, "cores: 64 is not allowed; partition 'batch' allows 1 to 4"),
    ({"cores": "two"}, "cores: 'two' is not allowed"),
    ({"cores": 0}, "allows 1 to 4"),
    ({"runtime": 500}, "runtime (minutes): 500 is not allowed; partition 'batch' allows 1 to 120"),
    ({"gpus": 1}, "gpus: partition 'batch' has no GPUs; ask for 0 there, or choose develgpus"),
    ({"partition": "develgpus", "gpus": 3}, "gpus: 3 is not allowed; partition 'develgpus' "
     "allows 0 to 2"),
    ({"account": "someone-else"}, "account (project): 'someone-else' is not offered; choose "
     "'training2401', 'other'"),
    ({"reservation": "other-course"}, "reservation: 'other-course' is not offered; choose "
     "'psml-ws', none"),
    ({"image": "x"}, "unknown option(s) image; the form has account, partition"),
    ({"cores": ["1", "2"]}, "cores: expected one value, got 2"),
])
def test_invalid_choices_are_refused_saying_what_is_allowed(hub, raw, says):
    with pytest.raises(form.FormError) as exc:
        form.validate(hub, raw)
    assert says in str(exc.value), f"expected {says!r} in: {exc.value}"


def test_every_problem_is_reported_at_once(hub):
    with pytest.raises(form.FormError) as exc:
        form.validate(hub, {"cores": 99, "runtime": 0, "account": "x"})
    msg = str(exc.value)
    assert all(k in msg for k in ("cores:", "runtime (minutes):", "account (project):")), msg


def test_site_without_accounts_or_reservation(hub):
    from dataclasses import replace

    bare = replace(hub, accounts=(), reservation="")
    req = form.validate(bare, {})
    assert (req.account, req.reservation) == ("", "")
    assert not any(o.startswith(("--account", "--reservation")) for o in req.sbatch_options())
    html = form.render(bare)
    assert 'name="account"' not in html and 'name="reservation"' not in html
    with pytest.raises(form.FormError, match="none"):
        form.validate(bare, {"reservation": "psml-ws"})


def test_form_escapes_names(hub):
    from dataclasses import replace

    odd = replace(hub, accounts=('a"><script>x</script>',))
    assert "<script>x</script>" not in form.render(odd)


# --- the job script ----------------------------------------------------------------------

def test_job_script_asks_for_what_the_form_chose_and_loads_the_course_module(hub):
    req = form.validate(hub, {"partition": "develgpus", "cores": 2, "gpus": 1, "runtime": 20})
    text = jobscript.render(req, hub, homedir="/home/alice", export=["JUPYTERHUB_API_TOKEN",
                                                                      "PATH"],
                            cmd=["/opt/venv/bin/batchspawner-singleuser",
                                 "/opt/venv/bin/jupyterhub-singleuser"], memory="4G")
    sbatch = [ln[len("#SBATCH "):] for ln in text.splitlines() if ln.startswith("#SBATCH ")]
    assert sbatch == [
        "--job-name=psml-jupyter", "--output=/home/alice/.psml-jupyter-%j.log",
        "--chdir=/home/alice", "--export=JUPYTERHUB_API_TOKEN,PATH",
        "--partition=develgpus", "--time=20", "--ntasks=2", "--cpus-per-task=1",
        "--account=training2401", "--reservation=psml-ws", "--gres=gpu:1", "--mem=4G"]
    body = text.split("set -euo pipefail", 1)[1]
    assert body.index("module use /shared/modulefiles") < body.index("module load psml") \
        < body.index("exec /opt/venv/bin/batchspawner-singleuser "
                     "/opt/venv/bin/jupyterhub-singleuser")
    assert "module --force purge" in body
    r = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, f"the job script is not valid bash: {r.stderr}"
    assert jobscript.log_path("/home/alice/", "42") == "/home/alice/.psml-jupyter-42.log"


# --- the hub config (psml.hub.config → psml.hub.slurm.configure) --------------------------

def test_generated_hub_config_selects_the_slurm_spawner():
    from psml.hub.config import build_config, load_settings, render
    from psml.hub.slurm import PsmlSlurmSpawner, job_announcement

    s = load_settings("jsc-like")
    c = build_config(s, ["instructor1"], ["student1"])
    assert c.JupyterHub.spawner_class is PsmlSlurmSpawner
    assert c.PsmlSlurmSpawner.slurm["reservation"] == "${PSML_RESERVATION:-}", \
        "placeholders are filled at spawn time, from the hub's environment"
    assert c.PsmlSlurmSpawner.req_memory == s.mem_limit, "the hub's mem_limit becomes --mem"
    assert c.PsmlSlurmSpawner.start_timeout > 300, "longer than the profile's queue_timeout"
    assert c.JupyterHub.template_vars["announcement_home"] is job_announcement
    text = render(c, s)
    assert "from psml.hub.slurm import PsmlSlurmSpawner" in text
    compile(text, "jupyterhub_config.py", "exec")


def test_slurm_spawner_without_a_slurm_table_is_refused(tmp_path):
    from psml.hub.config import build_config, load_settings

    site = tmp_path / "noslurm.toml"
    site.write_text('environment = "/opt/venv"\n[variants.cpu]\n[hub]\nspawner = "slurm"\n')
    with pytest.raises(kernels.ProfileError, match=r"needs a \[hub.slurm\] table"):
        build_config(load_settings(str(site)), [], ["s1"])


def test_remaining_time_in_words():
    from datetime import datetime

    from psml.hub.slurm import PsmlSlurmSpawner

    sp = PsmlSlurmSpawner(job_id="4711", job_end="2026-12-01T16:30:00")
    words = sp.remaining(now=datetime(2026, 12, 1, 15, 17, 30))
    assert "Slurm job 4711 until 16:30" in words and "(1 h 12 min left)" in words, words
    assert "without a time limit" in PsmlSlurmSpawner(job_id="1", job_end="Unknown").remaining()
    assert PsmlSlurmSpawner().remaining() == "", "no job, no announcement"


def test_an_unfilled_placeholder_stops_the_spawn_naming_it():
    from psml.hub.slurm import PsmlSlurmSpawner, SlurmSpawnError

    sp = PsmlSlurmSpawner(slurm=dict(SLURM, accounts=["${PSML_NO_SUCH_PROJECT}"]))
    with pytest.raises(SlurmSpawnError) as exc:
        sp.site()
    assert "PSML_NO_SUCH_PROJECT" in exc.value.jupyterhub_message, exc.value.jupyterhub_message
