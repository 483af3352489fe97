"""Course kernels from site profiles, run through real Lmod (Debian's `lmod`).

The test profile's modules are real modulefiles in a temporary MODULEPATH; its environment
is this venv (sys.prefix). Kernels are found through JUPYTER_PATH, as on an HPC site.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from psml import __version__, kernels

ROOT = Path(__file__).resolve().parents[1]
LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")
LMOD_BOOKKEEPING = ("_ModuleTable", "__LMOD", "LMOD_", "_LMFILES_", "LOADEDMODULES",
                    "MODULEPATH", "BASH_FUNC_", "MODULESHOME")

FAKE_MODULES = {
    "GCC/12": 'setenv("FAKE_GCC_ROOT", "/opt/gcc/12")\n',
    # Module-built Python stacks reach the venv through PYTHONPATH (pythonpath = "modules").
    "Python/3.11": 'setenv("FAKE_PYTHON", "3.11")\n'
                   'prepend_path("PYTHONPATH", "/opt/fake-python/site-packages")\n',
    "CUDA/12": 'setenv("FAKE_CUDA_HOME", "/opt/cuda/12")\n',
}


def clean_env(**extra) -> dict[str, str]:
    """This process's environment without any Lmod state (as a fresh Jupyter server has)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(LMOD_BOOKKEEPING)}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def modulepath(tmp_path_factory) -> Path:
    assert LMOD_INIT.is_file(), (f"Lmod is not installed ({LMOD_INIT} missing): run "
                                 "`PSML_SETUP_TEST=1 tools/setup.sh` (installs Debian's lmod)")
    mp = tmp_path_factory.mktemp("modulefiles")
    for name, body in FAKE_MODULES.items():
        f = mp / f"{name}.lua"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(body)
    return mp


def write_profile(path: Path, modules=("GCC/12", "Python/3.11"), pythonpath="modules",
                  extra_env: dict | None = None, variants: str | None = None) -> Path:
    env = {"PSML_DATA": "/shared/psml-data", "OMP_NUM_THREADS": "${SLURM_CPUS_PER_TASK:-1}",
           **(extra_env or {})}
    env_toml = "\n".join(f"{k} = {json.dumps(v)}" for k, v in env.items())
    variants = variants or """
[variants.cpu]
display_name = "psml (CPU)"
env = { CUDA_VISIBLE_DEVICES = "" }

[variants.gpu]
display_name = "psml (GPU)"
modules = ["CUDA/12"]

[variants.mpi]
display_name = "psml (MPI)"
env = { OMPI_MCA_rmaps_base_oversubscribe = "1" }
"""
    path.write_text(f"""
description = "test site"
modules = {json.dumps(list(modules))}
environment = {json.dumps(sys.prefix)}
pythonpath = "{pythonpath}"

[env]
{env_toml}
{variants}""")
    return path


@pytest.fixture(scope="module")
def markers(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def site(tmp_path_factory, modulepath, markers):
    """The test site's kernels installed into a shared prefix; returns (prefix, profile)."""
    d = tmp_path_factory.mktemp("site")
    # Values full of shell syntax: must arrive verbatim and run nothing.
    inject = {"PSML_INJECT_1": f"a'; touch {markers}/one; echo 'b",
              "PSML_INJECT_2": f'c"; touch {markers}/two; echo "d & e | f > g'}
    profile = kernels.load_profile(write_profile(d / "testsite.toml", extra_env=inject))
    prefix = d / "prefix"
    kernels.install(profile, prefix=prefix)
    return prefix, profile


def kernel_env(prefix: Path, modulepath: Path) -> dict[str, str]:
    return clean_env(JUPYTER_PATH=str(prefix / "share" / "jupyter"), MODULEPATH=str(modulepath),
                     PYTHONPATH="/leaked/from/the/login/shell",
                     SLURM_JOB_ID="42", SLURM_MEM_PER_NODE="4000", SLURM_MEM_PER_CPU="1000",
                     SLURM_CPU_BIND="quiet,mask_cpu:0x1", SLURM_CPUS_PER_TASK="3")


PROBE = """
import json, os, sys
keys = ["LOADEDMODULES", "FAKE_GCC_ROOT", "FAKE_PYTHON", "FAKE_CUDA_HOME", "PSML_KERNEL",
        "PSML_DATA", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "OMPI_MCA_rmaps_base_oversubscribe",
        "PYTHONPATH", "PYTHONUSERBASE", "PSML_INJECT_1", "PSML_INJECT_2", "SLURM_JOB_ID",
        "SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU", "SLURM_CPU_BIND", "SLURM_CPUS_PER_TASK"]
print(json.dumps({"env": {k: os.environ.get(k) for k in keys}, "prefix": sys.prefix,
                  "path": sys.path}))
"""


def run_in_kernel(name: str, env: dict[str, str], code: str = PROBE, timeout: float = 90):
    """Start kernel ``name`` as JupyterLab would, execute one cell, return its stdout."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    ksm = KernelSpecManager()  # reads JUPYTER_PATH now (monkeypatched by the caller)
    km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        assert reply["content"]["status"] == "ok", f"cell failed in {name}: {''.join(out)}"
        return "".join(out)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# --- generated files ----------------------------------------------------------------------

def test_kernelspec_list_shows_every_variant(site, modulepath):
    """`jupyter kernelspec list` finds the generated kernels through JUPYTER_PATH."""
    prefix, profile = site
    r = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"],
                       env=kernel_env(prefix, modulepath), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    specs = json.loads(r.stdout)["kernelspecs"]
    for variant in ("cpu", "gpu", "mpi"):
        name = f"psml-{variant}"
        assert name in specs, \
            f"expected kernel {name} in `jupyter kernelspec list`, got {sorted(specs)}"
        spec = specs[name]["spec"]
        assert spec["argv"] == ["{resource_dir}/kernel.sh", "-f", "{connection_file}"]
        assert spec["display_name"] == f"psml ({variant.upper()})"
        assert spec["metadata"]["psml"]["site"] == "testsite"
        kdir = Path(specs[name]["resource_dir"])
        assert os.access(kdir / "kernel.sh", os.X_OK), "kernel.sh must be executable"
        for logo in kernels.LOGOS:
            assert (kdir / logo).is_file(), f"missing {logo} in {kdir}"


def test_kernel_script_loads_exactly_the_profiles_modules(site):
    """kernel.sh: purge, then the profile's modules in order, each failing fast."""
    prefix, _ = site
    text = (prefix / "share/jupyter/kernels/psml-gpu/kernel.sh").read_text()
    loads = [line.split()[2] for line in text.splitlines() if line.startswith("module load ")]
    assert loads == ["GCC/12", "Python/3.11", "CUDA/12"], f"module loads in kernel.sh: {loads}"
    assert text.index("module --force purge") < text.index("module load GCC/12")
    assert all("|| fail" in line for line in text.splitlines() if line.startswith("module load"))
    assert text.rstrip().endswith('exec python -m ipykernel_launcher "$@"')
    r = subprocess.run(["bash", "-n", str(prefix / "share/jupyter/kernels/psml-gpu/kernel.sh")],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"kernel.sh is not valid bash: {r.stderr}"


# --- kernels started through Lmod ---------------------------------------------------------

@pytest.mark.parametrize("variant", ["cpu", "gpu", "mpi"])
def test_kernel_starts_with_modules_and_variables(site, modulepath, markers, monkeypatch, variant):
    """Each variant starts; a cell sees the modules loaded and the profile's variables."""
    prefix, profile = site
    env = kernel_env(prefix, modulepath)
    monkeypatch.setenv("JUPYTER_PATH", env["JUPYTER_PATH"])
    got = json.loads(run_in_kernel(f"psml-{variant}", env))
    e = got["env"]
    want_modules = ["GCC/12", "Python/3.11"] + (["CUDA/12"] if variant == "gpu" else [])
    assert (e["LOADEDMODULES"] or "").split(":") == want_modules, \
        f"LOADEDMODULES: expected {want_modules}, got {e['LOADEDMODULES']!r}"
    assert e["FAKE_GCC_ROOT"] == "/opt/gcc/12" and e["FAKE_PYTHON"] == "3.11", \
        f"variables of the modules missing: {e}"
    assert (e["FAKE_CUDA_HOME"] is not None) == (variant == "gpu"), \
        f"only the gpu variant loads CUDA/12, got FAKE_CUDA_HOME={e['FAKE_CUDA_HOME']!r}"
    assert e["PSML_KERNEL"] == f"testsite-{variant}", f"PSML_KERNEL={e['PSML_KERNEL']!r}"
    assert e["PSML_DATA"] == "/shared/psml-data", f"PSML_DATA={e['PSML_DATA']!r}"
    assert e["OMP_NUM_THREADS"] == "3", \
        f"OMP_NUM_THREADS should be the job's SLURM_CPUS_PER_TASK=3, got {e['OMP_NUM_THREADS']!r}"
    assert e["PYTHONUSERBASE"].endswith(f"/.local/psml/{__version__}"), e["PYTHONUSERBASE"]
    if variant == "cpu":
        assert e["CUDA_VISIBLE_DEVICES"] == "", "the cpu variant hides GPUs"
    if variant == "mpi":
        assert e["OMPI_MCA_rmaps_base_oversubscribe"] == "1"
    # pythonpath = "modules": the module's entry survives, the login shell's leak does not.
    assert e["PYTHONPATH"] == "/opt/fake-python/site-packages", f"PYTHONPATH={e['PYTHONPATH']!r}"
    assert "/leaked/from/the/login/shell" not in got["path"], "a leaked PYTHONPATH reached sys.path"
    assert got["prefix"] == sys.prefix, \
        f"kernel runs in {got['prefix']}, expected the venv {sys.prefix}"
    # Slurm: the job id stays, the variables that break sbatch/srun are gone.
    assert e["SLURM_JOB_ID"] == "42"
    for k in ("SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU", "SLURM_CPU_BIND", "SLURM_CPUS_PER_TASK"):
        assert e[k] is None, f"{k} should be unset in the kernel, got {e[k]!r}"
    # Shell syntax in profile values is data, not code.
    assert e["PSML_INJECT_1"] == f"a'; touch {markers}/one; echo 'b"
    assert e["PSML_INJECT_2"] == f'c"; touch {markers}/two; echo "d & e | f > g'
    assert not list(markers.iterdir()), f"a profile value ran a command: {list(markers.iterdir())}"


def test_local_profile_needs_no_lmod_and_drops_pythonpath(tmp_path, monkeypatch):
    """No modules: no Lmod needed (laptops); pythonpath = "unset" drops a leaked PYTHONPATH."""
    profile = kernels.load_profile(write_profile(
        tmp_path / "laptop.toml", modules=(), pythonpath="unset",
        variants='[variants.cpu]\ndisplay_name = "psml (CPU)"\n'))
    kernels.install(profile, prefix=tmp_path / "prefix")
    text = (tmp_path / "prefix/share/jupyter/kernels/psml-cpu/kernel.sh").read_text()
    code = [line for line in text.splitlines() if not line.startswith("#")]
    assert not [c for c in code if "module" in c], "a profile without modules must not need Lmod"
    jp = str(tmp_path / "prefix/share/jupyter")
    monkeypatch.setenv("JUPYTER_PATH", jp)
    env = clean_env(JUPYTER_PATH=jp, PYTHONPATH="/leaked/from/the/login/shell")
    got = json.loads(run_in_kernel("psml-cpu", env))
    assert got["env"]["PYTHONPATH"] is None, f"PYTHONPATH leaked: {got['env']['PYTHONPATH']!r}"
    assert got["env"]["PSML_KERNEL"] == "laptop-cpu"


def test_missing_module_fails_fast_naming_it(tmp_path, modulepath, monkeypatch):
    """A module that does not exist stops kernel.sh with its name, not an ipykernel error."""
    profile = kernels.load_profile(write_profile(
        tmp_path / "broken.toml", modules=("GCC/12", "NoSuch/1.0", "Python/3.11"),
        variants='[variants.cpu]\ndisplay_name = "psml (CPU)"\n'))
    prefix = tmp_path / "prefix"
    (kdir,) = kernels.install(profile, prefix=prefix)
    env = kernel_env(prefix, modulepath)
    t0 = time.monotonic()
    r = subprocess.run([str(kdir / "kernel.sh"), "-f", str(tmp_path / "conn.json")], env=env,
                       capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert r.returncode != 0, "kernel.sh should fail when a module is missing"
    assert "module 'NoSuch/1.0' failed to load" in r.stderr, f"stderr: {r.stderr}"
    assert "psml kernel broken-cpu" in r.stderr, f"stderr: {r.stderr}"
    assert "ipykernel_launcher" not in r.stderr, f"misleading ipykernel error: {r.stderr}"
    assert "Python/3.11" not in r.stdout + r.stderr.split("NoSuch/1.0' failed")[1], \
        "modules after the failing one must not be loaded"
    print(f"kernel.sh failed in {took:.2f} s")

    # Through jupyter_client, as JupyterLab starts it: the process dies, it does not hang.
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.setenv("JUPYTER_PATH", env["JUPYTER_PATH"])
    km = KernelManager(kernel_name="psml-cpu", kernel_spec_manager=KernelSpecManager())
    km.start_kernel(env=env)
    deadline = time.monotonic() + 30
    while km.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = km.is_alive()
    km.shutdown_kernel(now=True)
    assert not alive, "the kernel with a missing module should exit within 30 s"


# --- the course modulefile under Lmod -----------------------------------------------------

def lmod(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"source {LMOD_INIT}\n{script}"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_modulefile_loads_and_unloads_cleanly(site, modulepath, tmp_path):
    """`module load psml`: site modules, JUPYTER_PATH, PSML_DATA, PYTHONUSERBASE, Slurm
    variables unset; `module unload psml` restores the environment."""
    prefix, _ = site
    mf = prefix / "modulefiles" / "psml" / f"{__version__}.lua"
    assert mf.is_file(), f"install --prefix should write {mf}"
    env = clean_env(MODULEPATH=f"{modulepath}:{prefix / 'modulefiles'}",
                    SLURM_MEM_PER_NODE="4000", SLURM_CPU_BIND="quiet", SLURM_JOB_ID="42")
    env.pop("JUPYTER_PATH", None)
    dump = f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    r = lmod(f"""{dump} > {tmp_path}/before.json
module load psml || exit 3
{dump} > {tmp_path}/loaded.json
{sys.executable} -m jupyter kernelspec list --json > {tmp_path}/specs.json || exit 4
module unload psml || exit 5
{dump} > {tmp_path}/after.json
""", env)
    assert r.returncode == 0, f"module load/unload failed (rc {r.returncode}): {r.stderr}"
    before, loaded, after = (json.loads((tmp_path / f"{n}.json").read_text())
                             for n in ("before", "loaded", "after"))
    mods = loaded["LOADEDMODULES"].split(":")
    assert mods == ["GCC/12", "Python/3.11", f"psml/{__version__}"], \
        f"depends_on should load the site modules first, got {mods}"
    assert loaded["JUPYTER_PATH"].split(":")[0] == str((prefix / "share/jupyter").resolve())
    assert loaded["PSML_DATA"] == "/shared/psml-data"
    assert loaded["PYTHONUSERBASE"] == f"{before['HOME']}/.local/psml/{__version__}"
    assert "SLURM_MEM_PER_NODE" not in loaded and "SLURM_CPU_BIND" not in loaded
    assert loaded["SLURM_JOB_ID"] == "42"
    specs = json.loads((tmp_path / "specs.json").read_text())["kernelspecs"]
    assert {"psml-cpu", "psml-gpu", "psml-mpi"} <= set(specs), \
        f"with the module loaded Jupyter should find the kernels, got {sorted(specs)}"

    def user_vars(e):
        return {k: v for k, v in e.items() if not k.startswith(LMOD_BOOKKEEPING)}

    assert user_vars(after) == user_vars(before), (
        "module unload psml should restore the environment; differences: "
        f"{set(user_vars(after).items()) ^ set(user_vars(before).items())}")
    assert not after.get("LOADEDMODULES"), f"still loaded: {after.get('LOADEDMODULES')}"


def test_modulefile_stops_the_real_srun_failure(site, modulepath, tmp_path):
    """Real Slurm 22.05: srun with the Jupyter job's SLURM_MEM_PER_CPU and SLURM_MEM_PER_NODE
    (what a job submitted with sbatch from Jupyter inherits) dies at once; with the psml
    module loaded it gets past option parsing (no controller here, so it then times out)."""
    import shutil

    assert shutil.which("srun"), "no srun: run `PSML_SETUP_TEST=1 tools/setup.sh` (slurm-wlm)"
    prefix, _ = site
    conf = tmp_path / "slurm.conf"  # a controller that is never started: parsing only
    conf.write_text("ClusterName=psmltest\nSlurmctldHost=localhost\nSlurmctldPort=46917\n"
                    "AuthType=auth/none\nNodeName=localhost CPUs=1\nPartitionName=p "
                    "Nodes=ALL Default=YES\n")
    env = clean_env(MODULEPATH=f"{modulepath}:{prefix / 'modulefiles'}", SLURM_CONF=str(conf),
                    SLURM_MEM_PER_CPU="1000", SLURM_MEM_PER_NODE="4000")
    fatal = "are mutually exclusive"
    r = lmod("timeout -s KILL 2 srun -n1 true", env)
    assert fatal in r.stderr, f"expected srun's fatal error without the module: {r.stderr}"
    r = lmod("module load psml || exit 3\ntimeout -s KILL 2 srun -n1 true", env)
    assert r.returncode != 3, r.stderr
    assert fatal not in r.stderr, f"srun still sees the memory variables: {r.stderr}"


def test_modulefile_one_version_at_a_time(site, modulepath, tmp_path):
    """family("psml"): loading another version replaces the first."""
    prefix, _ = site
    mdir = tmp_path / "mods" / "psml"
    mdir.mkdir(parents=True)
    text = (prefix / "modulefiles/psml" / f"{__version__}.lua").read_text()
    (mdir / f"{__version__}.lua").write_text(text)
    (mdir / "9.9.9.lua").write_text(text)
    env = clean_env(MODULEPATH=f"{modulepath}:{tmp_path / 'mods'}")
    r = lmod(f'module load psml/{__version__} && module load psml/9.9.9 && echo "$LOADEDMODULES"',
             env)
    assert r.returncode == 0, r.stderr
    loaded = r.stdout.strip().splitlines()[-1].split(":")
    assert [m for m in loaded if m.startswith("psml/")] == ["psml/9.9.9"], loaded


def test_committed_modulefile_is_generated_from_the_jsc_profile():
    """modules/psml/<version>.lua is exactly what the generator makes (it cannot drift)."""
    committed = ROOT / "modules" / "psml" / f"{__version__}.lua"
    want = kernels.render_modulefile(kernels.load_profile("jsc-like"),
                                     "/p/project/${PSML_PROJECT}/psml")
    assert committed.is_file(), f"missing {committed}"
    assert committed.read_text() == want, (
        f"{committed} is stale: regenerate it with `python -m psml kernels modulefile --site "
        "jsc-like --prefix '/p/project/${PSML_PROJECT}/psml' -o modules/psml/"
        f"{__version__}.lua`")


# --- profiles -----------------------------------------------------------------------------

@pytest.mark.parametrize("site_name", kernels.available_sites())
def test_committed_profiles_are_valid(site_name):
    profile = kernels.load_profile(site_name)
    assert "cpu" in profile.variants
    for v in profile.variants:
        r = subprocess.run(["bash", "-n"], input=kernels.render_kernel_sh(profile, v),
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{site_name}/{v}: kernel.sh is not valid bash: {r.stderr}"


def test_required_sites_exist():
    assert {"local", "jsc-like", "generic-slurm"} <= set(kernels.available_sites())
    jsc = kernels.load_profile("jsc-like")
    assert {"cpu", "gpu", "mpi"} <= set(jsc.variants)
    assert "${PSML_PROJECT}" in jsc.env["PSML_DATA"], "shared data dir by placeholder, not a person"


GOOD = {"environment": "/opt/venv", "modules": ["GCC/12"],
        "variants": {"cpu": {"display_name": "psml (CPU)"}}}


def bad(**changes):
    data = json.loads(json.dumps(GOOD))
    for k, v in changes.items():
        data[k] = v
    return data


@pytest.mark.parametrize("data, field, reason", [
    (bad(modlues=["GCC/12"]), "modlues", "unknown field"),
    (bad(modules=["GCC/12; rm -rf ~"]), "modules[0]", "not a module name"),
    (bad(modules=["GCC/12", "$(curl evil)"]), "modules[1]", "not a module name"),
    (bad(modules=["../../etc/x"]), "modules[0]", "not a module name"),
    (bad(modules="GCC/12"), "modules", "must be a list"),
    (bad(env={"BAD NAME": "x"}), "env.BAD NAME", "not a variable name"),
    (bad(env={"X": "$(touch /tmp/pwned)"}), "env.X", "'$' is only allowed"),
    (bad(env={"X": "`id`"}), "env.X", "backticks"),
    (bad(env={"X": "$HOME/data"}), "env.X", "${NAME}"),
    (bad(env={"X": "line\nbreak"}), "env.X", "control characters"),
    (bad(env={"PYTHONPATH": "/x"}), "env.PYTHONPATH", "reserved"),
    (bad(env={"X": ["list"]}), "env.X", "string or a number"),
    (bad(environment="~/venv"), "environment", "absolute path"),
    (bad(pythonpath="sometimes"), "pythonpath", "is not one of"),
    (bad(variants={}), "variants", "at least one variant"),
    (bad(variants={"GPU": {}}), "variants.GPU", "must match"),
    (bad(variants={"gpu": {"modules": ["CUDA/12 && id"]}}), "variants.gpu.modules[0]",
     "not a module name"),
    (bad(variants={"gpu": {"dispaly_name": "x"}}), "variants.gpu.dispaly_name", "unknown field"),
])
def test_bad_profiles_are_rejected_with_the_field(data, field, reason):
    with pytest.raises(kernels.ProfileError) as exc:
        kernels.parse_profile(data, "testsite", "t.toml")
    msg = str(exc.value)
    assert f"field '{field}'" in msg and reason in msg, f"message should name {field!r} and " \
        f"say {reason!r}, got: {msg}"


@pytest.mark.parametrize("name", ["Bad_Site", "jsc;rm", "-x", "Jsc"])
def test_bad_site_names_are_rejected(name):
    with pytest.raises(kernels.ProfileError, match="field 'name'"):
        kernels.parse_profile(GOOD, name)


def test_install_time_vars_fill_placeholders_and_are_checked():
    p = kernels.parse_profile(bad(environment="/p/${PSML_PROJECT}/venv",
                                  env={"PSML_DATA": "/p/${PSML_PROJECT}/data"}), "s")
    filled = kernels.substitute(p, {"PSML_PROJECT": "training2404"})
    assert filled.environment == "/p/training2404/venv"
    assert filled.env["PSML_DATA"] == "/p/training2404/data"
    with pytest.raises(kernels.ProfileError):
        kernels.substitute(p, {"PSML_PROJECT": "x$(id)"})
    # Unfilled placeholders stay run-time lookups that stop kernel.sh when unset.
    assert '"${PSML_PROJECT:?' in kernels.render_kernel_sh(p, "cpu")


# --- command line -------------------------------------------------------------------------

def test_cli_install_list_remove(tmp_path, modulepath, monkeypatch, capsys):
    """`psml kernels install/list/remove` through psml's command line (in-process)."""
    from psml.cli import main

    prof = write_profile(tmp_path / "clisite.toml")
    prefix = tmp_path / "prefix"
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share/jupyter"))

    class Result:
        def __init__(self, rc, captured):
            self.returncode, self.stdout, self.stderr = rc, captured.out, captured.err

    def psml(*args):
        rc = main(["kernels", *args])
        return Result(rc, capsys.readouterr())

    r = psml("install", "--site", str(prof), "--prefix", str(prefix), "--variant", "gpu")
    assert r.returncode == 0, r.stderr
    assert "psml (GPU)" in r.stdout and "JUPYTER_PATH=" in r.stdout
    assert sorted(p.name for p in (prefix / "share/jupyter/kernels").iterdir()) == ["psml-gpu"]
    r = psml("list")
    assert r.returncode == 0 and "psml-gpu" in r.stdout and "clisite" in r.stdout, r.stdout
    assert "jsc-like" in r.stdout, "list should name the available site profiles"
    r = psml("install", "--site", str(prof), "--prefix", str(prefix), "--variant", "tpu")
    assert r.returncode == 2 and "no variant tpu" in r.stderr, r.stderr
    r = psml("install", "--site", "no-such-site", "--prefix", str(prefix))
    assert r.returncode == 2 and "jsc-like" in r.stderr, "should list the sites to choose from"
    (prefix / "share/jupyter/kernels/other").mkdir()
    r = psml("remove", "--prefix", str(prefix))
    assert r.returncode == 0, r.stderr
    left = sorted(p.name for p in (prefix / "share/jupyter/kernels").iterdir())
    assert left == ["other"], f"remove takes psml kernels only, left {left}"
    assert not (prefix / "modulefiles/psml" / f"{__version__}.lua").exists()


# --- psml doctor on an HPC session --------------------------------------------------------

def test_doctor_inside_the_course_kernel(site, modulepath, monkeypatch):
    """In a generated kernel, doctor sees the course kernel, its modules, and a Slurm
    environment without the variables that break sbatch (kernel.sh unset them)."""
    prefix, _ = site
    env = kernel_env(prefix, modulepath)
    monkeypatch.setenv("JUPYTER_PATH", env["JUPYTER_PATH"])
    code = ("import json\nfrom psml import doctor as d\n"
            "print(json.dumps([c.__dict__ for f in (d.course_kernel, d.modules, d.slurm) "
            "for c in (lambda r: r if isinstance(r, list) else [r])(f())]))")
    checks = {c["name"]: c for c in json.loads(run_in_kernel("psml-cpu", env, code))}
    assert checks["course kernel"]["status"] == "ok", checks["course kernel"]
    assert "testsite-cpu" in checks["course kernel"]["detail"]
    assert checks["modules"]["status"] == "ok", checks["modules"]
    assert "GCC/12, Python/3.11" in checks["modules"]["detail"]
    assert "job 42" in checks["Slurm"]["detail"], checks["Slurm"]
    assert "Slurm env" not in checks, f"kernel.sh should have unset them: {checks['Slurm env']}"


def test_doctor_warns_about_slurm_variables_and_foreign_kernels(monkeypatch):
    from psml import doctor

    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "4000")
    monkeypatch.setenv("SLURM_CPU_BIND", "quiet")
    monkeypatch.delenv("PSML_KERNEL", raising=False)
    monkeypatch.setenv("LOADEDMODULES", "GCC/12:Python/3.11")
    warn = {c.name: c for c in doctor.slurm()}["Slurm env"]
    assert warn.status == doctor.WARN
    assert "SLURM_MEM_PER_NODE" in warn.detail and "SLURM_CPU_BIND" in warn.detail
    assert "unset SLURM_MEM_PER_NODE SLURM_CPU_BIND" in warn.fix
    ck = doctor.course_kernel()
    assert ck.status == doctor.WARN and "psml (GPU)" in ck.fix, ck
    monkeypatch.delenv("LOADEDMODULES")
    assert doctor.course_kernel().status == doctor.INFO, "a laptop without modules is fine"
    assert doctor.modules().status == doctor.INFO
