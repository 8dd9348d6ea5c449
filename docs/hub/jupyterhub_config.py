# pgfactory-kit on The Littlest JupyterHub (TLJH): every learner who logs in gets a PostgreSQL role and a
# database of their own on the room's server, and their notebooks connect to it with no set-up.
#
#   sudo -E /opt/tljh/user/bin/pip install pgfactory-kit       # the kit in the learners' environment
#   sudo /opt/tljh/hub/bin/pip install pgfactory-kit           # ... and in the hub's (it runs this hook)
#   sudo cp jupyterhub_config.py /opt/tljh/config/jupyterhub_config.d/pgfactory.py
#   sudo systemctl edit jupyterhub     # [Service] Environment=PGFACTORY_ADMIN_DSN=postgresql://...
#   sudo tljh-config reload hub
#
# PGFACTORY_ADMIN_DSN names a superuser on the room's PostgreSQL; keep it in the hub's service environment,
# not in this file. The learners' credentials are kept in PGFACTORY_HUB_STATE (mode 0700, root only).
import os

from pgfactory_kit.servers.hub import RoomDatabase

c = get_config()  # noqa: F821  (JupyterHub's config loader provides it)

room = RoomDatabase(
    room_size=int(os.environ.get("PGFACTORY_ROOM_SIZE", "30")),
    state_dir=os.environ.get("PGFACTORY_HUB_STATE", "/srv/pgfactory-hub"),
    host=os.environ.get("PGFACTORY_LEARNER_HOST") or None,  # the server as learners reach it, if different
)
c.Spawner.pre_spawn_hook = room.pre_spawn_hook
