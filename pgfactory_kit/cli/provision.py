"""``pgfactory-kit provision``: create, check or drop the learners' roles on a shared server.

Every option is checked while the command line is parsed (``options``) and the combinations by
``validate`` before anything connects; the work itself is ``servers.provision``.
"""
from __future__ import annotations

import argparse
import os
import sys

import psycopg2

from ..errors import KitConnectError, ProvisionError, scrub
from ..servers.postgres import LocalServer
from ..servers.provision import (
    DEFAULT_PREFIX,
    MAX_CONNECTION_LIMIT,
    MAX_LEARNERS,
    RECOMMENDED_LIMIT,
    CheckReport,
    ProvisionResult,
    check,
    check_prefix,
    drop,
    provision,
)
from ..settings import ConnectionSettings
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pgfactory-kit provision``."""
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--drop", action="store_true", help="end the learners' sessions, drop their databases "
                        "and roles, delete the credentials file")
    action.add_argument("--check", action="store_true", help="report which learners exist, their limits and "
                        "sessions, and the connection budget")
    parser.add_argument("--learners", type=options.whole(1, MAX_LEARNERS, "e.g. --learners 12"), metavar="N",
                        help="how many learners (needed to provision)")
    parser.add_argument("--prefix", type=_prefix_option, default=DEFAULT_PREFIX,
                        help="role and database names are PREFIX1..PREFIXN (default: learner)")
    parser.add_argument("--dsn", type=options.dsn, default=None, metavar="ADMIN_DSN",
                        help="a superuser DSN for the shared server (default: $PGFACTORY_ADMIN_DSN, else the "
                        "kit's own server's admin role); prefer the variable: command lines are visible in ps")
    parser.add_argument("--out", type=options.file_to_write, default=None, metavar="FILE",
                        help="credentials file, CSV learner,database,dsn, mode 0600 "
                        "(default: .pgfactory/PREFIX-credentials.csv)")
    parser.add_argument("--connection-limit", type=options.whole(1, MAX_CONNECTION_LIMIT, "e.g. --connection-limit 7"),
                        default=None, metavar="K",
                        help="CONNECTION LIMIT per learner (default: a fair share of max_connections, at most "
                        f"{RECOMMENDED_LIMIT})")
    parser.add_argument("--host", type=options.non_empty("the host name learners connect to"), default=None,
                        help="host name the learners use in their DSNs "
                        "(default: the admin connection's host)")
    parser.add_argument("--reset-passwords", action="store_true",
                        help="give existing learners new passwords (default: keep them)")
    parser.add_argument("--data-dir", type=options.existing_folder, default=None,
                        help="the kit's server to use when no DSN is given")
    parser.add_argument("--port", type=options.PORT, default=None, help="that server's port")


def _prefix_option(raw: str) -> str:
    try:
        check_prefix(raw)
    except ProvisionError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--prefix {raw!r} ")) from None
    return raw


def validate(args: argparse.Namespace) -> str | None:
    """Options that conflict, or a missing --learners, before anything connects."""
    if args.dsn is not None and (args.data_dir is not None or args.port is not None):
        return "--dsn names the shared server; --data-dir/--port choose the kit's own. Give one or the other."
    if args.check or args.drop:
        action = "--check" if args.check else "--drop"
        extra = [flag for flag, value in (("--learners", args.learners), ("--connection-limit", args.connection_limit),
                                          ("--host", args.host), ("--reset-passwords", args.reset_passwords or None))
                 if value is not None]
        if extra:
            return f"{action} works on every learner of the prefix; leave out {', '.join(extra)}"
        return None
    if args.learners is None:
        return "say how many learners: --learners N (or --check / --drop)"
    return None


def admin_settings_from_args(args: argparse.Namespace) -> ConnectionSettings:
    """--dsn, else $PGFACTORY_ADMIN_DSN, else the kit's own server's admin role."""
    dsn = args.dsn or os.environ.get("PGFACTORY_ADMIN_DSN")
    if dsn:
        return ConnectionSettings.from_dsn(dsn).with_(connect_timeout=10)
    server = LocalServer(data_dir=args.data_dir, port=args.port)
    try:
        return server.admin_settings()
    except OSError:
        raise ProvisionError(
            f"the kit's server in {server.data_dir} has no admin credentials (never started?). What to do: "
            "run `pgfactory-kit up` first, or pass --dsn / PGFACTORY_ADMIN_DSN for a shared server.") from None


def run(args: argparse.Namespace) -> int:
    """Provision, drop or check; prints names, limits and the credentials file path, never a password."""
    admin = None
    try:
        admin = admin_settings_from_args(args)
        if args.check:
            _print_check(check(admin, args.prefix))
        elif args.drop:
            dropped = drop(admin, args.prefix, out=args.out, progress=_progress)
            print(f"Dropped {len(dropped)} learner(s) of prefix {args.prefix!r}"
                  + (f": {', '.join(dropped)}" if dropped else " (none existed)") + ".")
        else:
            if args.learners is None:
                raise ProvisionError("say how many learners: --learners N (or --check / --drop)")
            _print_result(provision(admin, args.learners, args.prefix, connection_limit=args.connection_limit,
                                    out=args.out, host=args.host, reset_passwords=args.reset_passwords,
                                    progress=_progress))
        return 0
    except (ProvisionError, KitConnectError, ValueError) as exc:
        print(f"pgfactory-kit provision: {scrub(str(exc), admin.password if admin else None)}", file=sys.stderr)
        return 1
    except psycopg2.Error as exc:
        text = scrub(str(exc).strip(), admin.password if admin else None)
        print(f"pgfactory-kit provision: the server refused a step: {text}\nWhat to do: fix the cause above and "
              "rerun; provisioning is idempotent.", file=sys.stderr)
        return 1


def _progress(step: str) -> None:
    print(f"  {step}", file=sys.stderr, flush=True)


def _print_result(result: ProvisionResult) -> None:
    print(f"{'learner':<20} {'database':<20} {'limit':>5}  status")
    for learner in result.learners:
        print(f"{learner.name:<20} {learner.dbname:<20} {learner.connection_limit:>5}  {learner.status}")
    print(f"Connection budget: {result.budget.arithmetic()}; "
          f"learners use {len(result.learners)} x {result.learners[0].connection_limit}.")
    for warning in result.warnings:
        print(f"Warning: {warning}")
    print(f"Credentials: {result.credentials_file} (mode 0600; hand each learner only their own line)")


def _print_check(report: CheckReport) -> None:
    if not report.learners:
        print(f"No learners of prefix {report.prefix!r} exist.")
    else:
        print(f"{'learner':<20} {'limit':>5} {'database':>9} {'sessions':>8} {'rows':>6}")
        for s in report.learners:
            rows = "-" if s.table_rows is None else str(s.table_rows)
            print(f"{s.name:<20} {s.connection_limit:>5} {'yes' if s.database_exists else 'MISSING':>9} "
                  f"{s.sessions:>8} {rows:>6}")
    print(f"Connection budget: {report.budget.arithmetic()}.")
    for warning in report.warnings:
        print(f"Warning: {warning}")
