"""Repository hygiene: clean notebooks, one set of pins, the two README commands."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [p for d in ("lectures", "solutions", "exercises") for p in (ROOT / d).rglob("*.ipynb")
             if ".ipynb_checkpoints" not in p.parts]


def test_notebooks_are_stored_clean():
    dirty = []
    for p in NOTEBOOKS:
        nb = json.loads(p.read_text())
        if nb["metadata"].get("kernelspec", {}).get("name") != "psml":
            dirty.append(f"{p.relative_to(ROOT)}: kernel is not 'psml'")
        if "jupytext" in nb["metadata"]:
            dirty.append(f"{p.relative_to(ROOT)}: jupytext metadata")
        for c in nb["cells"]:
            if c.get("outputs") or c.get("execution_count"):
                dirty.append(f"{p.relative_to(ROOT)}: stored outputs")
                break
    assert not dirty, "run tools/nbclean.py on:\n" + "\n".join(dirty)


def test_environment_yml_carries_the_lock_pins():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "envfile.py"), "--check"])
    assert r.returncode == 0, "environment.yml is stale: run `make lock`"


def test_every_dependency_is_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [d for ds in project["optional-dependencies"].values()
                                        for d in ds]
    locked = set(re.findall(r"^([A-Za-z0-9_.\-]+)==", (ROOT / "requirements.lock").read_text(),
                            re.M))
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    locked = {norm(n) for n in locked}
    missing = [d for d in wanted if norm(re.split(r"[<>=!~\[; ]", d)[0]) not in locked]
    assert not missing, f"not in requirements.lock (run `make lock`): {missing}"


def test_readme_has_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.strip()]
    assert commands == ["make lab", "make test"], commands
    assert "make test" in (ROOT / ".ci" / "run").read_text()
