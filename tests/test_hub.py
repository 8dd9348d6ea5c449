"""JupyterHub for a room: a real hub (DummyAuthenticator, SimpleLocalProcessSpawner, configurable-http-proxy)
on 127.0.0.1, with the sample config's pre_spawn_hook, gives two learners a role and database each."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import psycopg2
import pytest

from pgfactory_kit.errors import ProvisionError
from pgfactory_kit.servers.hub import RoomDatabase

from .conftest import ROOT, free_port, started_server
from .node_tools import node_bin

SAMPLE_CONFIG = ROOT / "docs" / "hub" / "jupyterhub_config.py"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="JupyterHub does not run on Windows")
BIN = Path(sys.executable).parent
HUB_START_S = 60
SPAWN_S = 120


@pytest.fixture(scope="module")
def room_server(tmp_path_factory):
    with started_server(tmp_path_factory, "hubpg") as srv:
        yield srv


class Hub:
    """A JupyterHub process of the test's own, driven through its REST API with a service token."""

    def __init__(self, folder: Path, admin_dsn: str, proxy: Path) -> None:
        self.folder = folder
        self.token = secrets.token_hex(16)
        self.port, self.hub_port, self.api_port = free_port(), free_port(), free_port()
        self.log_path = folder / "hub.log"
        homes = folder / "homes"
        for user in ("alice", "bob"):
            (homes / user).mkdir(parents=True)
        config = folder / "jupyterhub_config.py"
        config.write_text(f"""
c = get_config()  # noqa
load_subconfig({str(SAMPLE_CONFIG)!r})
c.JupyterHub.bind_url = "http://127.0.0.1:{self.port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{self.hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
c.ConfigurableHTTPProxy.command = [{str(proxy)!r}]
c.JupyterHub.db_url = "sqlite:///{folder / 'hub.sqlite'}"
c.JupyterHub.cookie_secret_file = {str(folder / 'cookie_secret')!r}
c.JupyterHub.pid_file = {str(folder / 'hub.pid')!r}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = {str(homes / '{username}')!r}
c.Spawner.cmd = [{str(BIN / 'jupyterhub-singleuser')!r}]
c.Spawner.args = ["--allow-root"] if __import__("os").geteuid() == 0 else []
c.Spawner.ip = "127.0.0.1"
c.Spawner.start_timeout = {SPAWN_S}
c.Spawner.http_timeout = {SPAWN_S}
c.JupyterHub.services = [{{"name": "room-test", "api_token": __import__("os").environ["ROOM_TEST_TOKEN"]}}]
c.JupyterHub.load_roles = [{{"name": "room-test", "services": ["room-test"],
                             "scopes": ["admin:users", "admin:servers", "list:users", "read:users"]}}]
""")
        env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "PGFACTORY_ADMIN_DSN": admin_dsn, "PGFACTORY_ROOM_SIZE": "4",
               "PGFACTORY_HUB_STATE": str(folder / "state"), "ROOM_TEST_TOKEN": self.token}
        for key in ("PGPASSWORD", "PGFACTORY_DSN", "DATABASE_URL", "PGUSER", "PGDATABASE", "PGHOST", "PGPORT"):
            env.pop(key, None)
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(config), "--debug"], cwd=folder,
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        self._wait(lambda: self.api("GET", "/") is not None, HUB_START_S, "the hub to answer")

    def api(self, method: str, path: str, ok: tuple[int, ...] = ()) -> dict | None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.hub_port}/hub/api{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                return json.loads(body) if body else {}
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code not in (502, 503, *ok):
                raise AssertionError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from None
            return None

    def _wait(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the hub exited ({self.process.returncode}):\n{self.log_text()[-3000:]}")
            if condition():
                return
            time.sleep(0.25)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}:\n{self.log_text()[-3000:]}")

    def spawn(self, user: str) -> None:
        self.api("POST", f"/users/{user}", ok=(409,))  # 409: the user exists (a respawn)
        self.api("POST", f"/users/{user}/server")

        def ready() -> bool:
            info = self.api("GET", f"/users/{user}") or {}
            return bool(info.get("servers", {}).get("", {}).get("ready"))
        self._wait(ready, SPAWN_S, f"{user}'s server")

    def server_environment(self, user: str) -> dict[str, str]:
        """The environment of ``user``'s single-user server, a child of this hub."""
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                env = child.environ()
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                continue
            if env.get("JUPYTERHUB_USER") == user:
                return env
        raise AssertionError(f"no single-user server of {user} among the hub's children")

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        children = psutil.Process(self.process.pid).children(recursive=True)
        for user in ("alice", "bob"):
            self.api("DELETE", f"/users/{user}/server")
        self.process.terminate()  # the hub stops the proxy and any server still running
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        gone, alive = psutil.wait_procs(children, timeout=15)
        for proc in alive:
            proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def hub(room_server, tmp_path_factory):
    proxy = node_bin("configurable-http-proxy")
    folder = tmp_path_factory.mktemp("hub")
    instance = Hub(folder, room_server.admin_settings().dsn(), proxy)
    try:
        instance.spawn("alice")
        instance.spawn("bob")
        yield instance
    finally:
        instance.stop()


def _connect(env: dict[str, str], dbname: str | None = None):
    return psycopg2.connect(host=env["PGHOST"], port=env["PGPORT"], dbname=dbname or env["PGDATABASE"],
                            user=env["PGUSER"], password=env["PGPASSWORD"], connect_timeout=10)


def test_each_learners_server_environment_names_their_own_role(hub):
    alice, bob = hub.server_environment("alice"), hub.server_environment("bob")
    assert alice["PGUSER"] == alice["PGDATABASE"] == alice["PGFACTORY_LEARNER"] == "learner1"
    assert bob["PGUSER"] == bob["PGDATABASE"] == bob["PGFACTORY_LEARNER"] == "learner2"
    assert alice["PGPASSWORD"] != bob["PGPASSWORD"]


def test_each_learner_connects_as_themselves_and_finds_the_lesson_table(hub):
    for user in ("alice", "bob"):
        env = hub.server_environment(user)
        conn = _connect(env)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_user, current_database(), count(*) FROM mytable")
                assert cur.fetchone() == (env["PGUSER"], env["PGDATABASE"], 5)
        finally:
            conn.close()


def test_a_learner_cannot_connect_to_the_other_learners_database(hub):
    alice, bob = hub.server_environment("alice"), hub.server_environment("bob")
    for me, other in ((alice, bob), (bob, alice)):
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            _connect(me, dbname=other["PGDATABASE"]).close()


def test_a_respawn_keeps_the_learners_role_and_password(hub):
    before = hub.server_environment("alice")
    hub.api("DELETE", "/users/alice/server")
    hub._wait(lambda: not (hub.api("GET", "/users/alice") or {}).get("servers"), SPAWN_S, "alice's server to stop")
    hub.spawn("alice")
    after = hub.server_environment("alice")
    assert (after["PGUSER"], after["PGPASSWORD"]) == (before["PGUSER"], before["PGPASSWORD"])


def test_no_password_in_the_hubs_log(hub, room_server, capsys):
    passwords = {hub.server_environment(u)["PGPASSWORD"] for u in ("alice", "bob")}
    passwords.add(room_server.admin_settings().password)  # the hub's own admin DSN
    log = hub.log_text()
    assert "pgfactory-kit: alice connects as learner1" in log  # the hook ran and said so, without a secret
    for password in passwords:
        assert password not in log
    assert "PGFACTORY_ADMIN_DSN" not in hub.server_environment("alice")  # the learner never sees it
    captured = capsys.readouterr()
    for password in passwords:
        assert password not in captured.out + captured.err


# ----------------------------------------------------------------------------- the room's arithmetic
def test_a_room_that_fits_connects_learners_straight_to_the_server(room_server, tmp_path):
    room = RoomDatabase(room_server.admin_settings(), room_size=4, state_dir=tmp_path, prefix="fits")
    env = room.environment_for("carol")
    assert (env["PGHOST"], env["PGPORT"]) == (room_server.host, str(room_server.port))
    assert room.placement().via_pgbouncer is False and room.placement().connection_limit == 15
    assert "password" not in repr(room) and env["PGPASSWORD"] not in repr(room)
    assert room.environment_for("carol") == env  # idempotent: same learner, same password


def test_a_room_too_big_for_max_connections_goes_through_pgbouncer(tmp_path_factory, tmp_path):
    from pgfactory_kit.servers.pgbouncer import LocalPgBouncer, find_pgbouncer
    if find_pgbouncer() is None:
        pytest.skip("PgBouncer is not installed (.ci/run installs Debian's pgbouncer)")
    with started_server(tmp_path_factory, "smallpg", max_connections=20) as small:
        bouncer = LocalPgBouncer(small, port=free_port())
        try:
            room = RoomDatabase(small.admin_settings(), room_size=10, state_dir=tmp_path, pgbouncer=bouncer)
            env = room.environment_for("dave")
            placement = room.placement()
            assert placement.via_pgbouncer and placement.connection_limit == 1  # (20 - 3 - 5) // 10
            assert int(env["PGPORT"]) == bouncer.port
            conn = _connect(env)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT current_user, count(*) FROM mytable")
                    assert cur.fetchone() == ("learner1", 5)
            finally:
                conn.close()
        finally:
            bouncer.destroy()


def test_a_room_too_big_without_pgbouncer_is_refused_with_the_arithmetic(tmp_path_factory, tmp_path):
    with started_server(tmp_path_factory, "tinypg", max_connections=20) as small:
        room = RoomDatabase(small.admin_settings(), room_size=10, state_dir=tmp_path)
        with pytest.raises(ProvisionError, match=r"max_connections 20 - reserved 3 - instructor headroom 5"):
            room.environment_for("erin")
