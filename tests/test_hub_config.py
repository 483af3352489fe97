"""psml.hub without a running hub: rosters, site-profile settings, the rendered config."""

import json
import sys
import types

import pytest

from psml.hub import config, roster
from psml.hub.config import HubError, build_config, load_settings, render


def test_roster_parses_members_and_roles():
    ms = roster.parse("id,name,role\nalice,Alice A,student\nbob,Bob B,Instructor\n\n")
    assert [(m.id, m.role) for m in ms] == [("alice", "student"), ("bob", "instructor")]
    assert roster.instructors(ms) == ["bob"] and roster.students(ms) == ["alice"]
    assert ms[0].first_last == ("Alice", "A")


@pytest.mark.parametrize("text, needles", [
    ("id,name,role\nann,A,student\nann,B,student\n", ["line 3", "already on line 2"]),
    ("id,name,role\nAnn Smith,A,student\n", ["line 2", "'Ann Smith'", "valid login"]),
    ("id,name,role\nann,A,teacher\n", ["line 2", "'teacher'", "student, instructor"]),
    ("id,name,role\nann,A\n", ["line 2", "expected 3 fields"]),
    ("name,id,role\nann,A,student\n", ["header 'id,name,role'"]),
    ("id,name,role\n", ["no members"]),
])
def test_bad_rosters_are_refused_with_every_line_named(text, needles):
    with pytest.raises(roster.RosterError) as e:
        roster.parse(text, "class.csv")
    for n in needles:
        assert n in str(e.value), (n, str(e.value))


def test_all_problems_reported_at_once():
    text = "id,name,role\nann,A,student\nann,B,student\nBad!,C,student\nok,D,teacher\n"
    msg = str(pytest.raises(roster.RosterError, roster.parse, text).value)
    assert "nothing was changed" in msg
    assert all(f"line {n}" in msg for n in (3, 4, 5)), msg


def test_settings_from_profile_and_overrides(tmp_path):
    prof = tmp_path / "site.toml"
    prof.write_text('[hub]\nport = 9100\nmem_limit = "2G"\nidle_timeout = 600\n')
    s = load_settings(str(prof), state_dir=str(tmp_path / "st"), port=None)
    assert (s.port, s.mem_limit, s.idle_timeout, s.spawner) == (9100, "2G", 600, "local")
    assert s.course_dir == tmp_path / "st" / "course"
    assert load_settings(str(prof), port=9200).port == 9200


@pytest.mark.parametrize("line, needle", [
    ('spawner = "kubernetes"', "spawner"), ("port = 70000", "port"),
    ('mem_limit = "lots"', "mem_limit"), ("colour = 1", "unknown field"),
])
def test_bad_hub_table_names_the_field(tmp_path, line, needle):
    prof = tmp_path / "site.toml"
    prof.write_text(f"[hub]\n{line}\n")
    with pytest.raises(HubError) as e:
        load_settings(str(prof))
    assert needle in str(e.value)


def test_rendered_config_loads_and_keeps_secrets_out(tmp_path):
    s = load_settings("local", state_dir=str(tmp_path), port=9300, environment="/opt/env")
    text = render(build_config(s, ["teach"], ["stu1", "stu2"]), s)
    secrets = {"user_password": "pw-student", "admin_password": "a" * 32,
               "api_token": "t" * 64, "proxy_token": "p" * 64}
    assert not any(v in text for v in secrets.values())
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "secrets.json").write_text(json.dumps(secrets))
    path = tmp_path / "hub" / "jupyterhub_config.py"
    path.write_text(text)
    from traitlets.config.loader import PyFileConfigLoader

    c = PyFileConfigLoader(path.name, str(path.parent)).load_config()
    assert c.SharedPasswordAuthenticator.user_password == "pw-student"
    assert c.Authenticator.admin_users == {"teach"}
    assert c.Authenticator.allowed_users == {"teach", "stu1", "stu2"}
    assert c.Spawner.cmd == ["/opt/env/bin/jupyterhub-singleuser"]
    assert c.JupyterHub.port == 9300 and c.JupyterHub.hub_port == 9301
    assert c.JupyterHub.cleanup_servers is False  # students survive a hub restart
    from psml.hub.spawn import pre_spawn_hook

    assert c.Spawner.pre_spawn_hook is pre_spawn_hook
    culler = next(sv for sv in c.JupyterHub.services if sv["name"] == "idle-culler")
    assert "jupyterhub_idle_culler" in culler["command"]


def test_roles_get_their_own_lab():
    student, teacher = config.page_config("student"), config.page_config("instructor")
    for plugin in config.INSTRUCTOR_PLUGINS:
        assert student["disabledExtensions"][plugin] and plugin not in \
            teacher["disabledExtensions"]
    assert config.NEWS_PLUGIN in student["disabledExtensions"]
    assert config.NEWS_PLUGIN in teacher["disabledExtensions"]
    ext = config.server_config("student")["ServerApp"]["jpserver_extensions"]
    assert not any(ext.values())
    assert all(config.server_config("instructor")["ServerApp"]["jpserver_extensions"].values())


def test_pre_spawn_hook_gives_each_role_its_config_folder():
    from psml.hub.spawn import pre_spawn_hook

    shared = {"PSML_HUB_STATE": "/srv/h"}
    sp = types.SimpleNamespace(environment=shared, user=types.SimpleNamespace(admin=False))
    pre_spawn_hook(sp)
    assert sp.environment["JUPYTER_CONFIG_PATH"] == "/srv/h/jupyter/student"
    assert "JUPYTER_CONFIG_PATH" not in shared  # the configured dict is not changed
    sp = types.SimpleNamespace(environment=shared, user=types.SimpleNamespace(admin=True))
    pre_spawn_hook(sp)
    assert sp.environment["JUPYTER_CONFIG_PATH"] == "/srv/h/jupyter/instructor"


def test_slurm_spawner_goes_through_the_configure_hook(tmp_path, monkeypatch):
    seen = {}

    def configure(c, settings):
        seen["settings"] = settings
        c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"

    monkeypatch.setitem(sys.modules, "psml.hub.slurm",
                        types.SimpleNamespace(configure=configure))
    s = load_settings("local", state_dir=str(tmp_path))
    s.spawner = "slurm"
    c = build_config(s, [], ["a"])
    assert seen["settings"] is s and c.JupyterHub.spawner_class == "batchspawner.SlurmSpawner"
    assert c.Spawner.pre_spawn_hook  # the common parts stay
