"""``lumenal users``: manage annotators directly in the labels database (operator bootstrap).

Works without the service running, on the database ``LUMENAL_DB_URL`` names,
so the first admin can be created before anyone can log in.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from lumenal.core.errors import ServiceError
from lumenal.labels.accounts import USER_ROLES, Accounts
from lumenal.labels.db import Database
from lumenal.labels.settings import load


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumenal users", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="create an annotator")
    add.add_argument("name")
    add.add_argument("--role", choices=USER_ROLES, default="annotator")
    add.add_argument("--password", help="at least 8 characters (prompted when omitted)")
    add.add_argument("--display-name", default="")
    sub.add_parser("list", help="list annotators")
    pw = sub.add_parser("passwd", help="set an annotator's password (revokes their sessions)")
    pw.add_argument("name")
    pw.add_argument("--password", help="prompted when omitted")
    for cmd in ("activate", "deactivate"):
        sub.add_parser(cmd, help=f"{cmd} an annotator").add_argument("name")
    return parser


def _password(given: str | None) -> str:
    if given:
        return given
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("passwords differ")
    return first


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = load()
    db = Database(settings.database_url(), pool_size=2)
    try:
        db.migrate()
        accounts = Accounts(db, settings.auth_secret, settings.token_ttl_s)
        if args.cmd == "list":
            print(f"{'username':<24} {'role':<10} {'active':<7} display name")
            for u in accounts.list():
                print(f"{u.username:<24} {u.role:<10} {'yes' if u.active else 'no':<7} {u.display_name}")
        elif args.cmd == "add":
            user = accounts.create(args.name, _password(args.password), args.role, args.display_name)
            print(f"created {user.username} ({user.role})")
        elif args.cmd == "passwd":
            user = accounts.get(args.name)
            accounts.update(args.name, password=_password(args.password), active=user.active)
            print(f"password changed for {args.name}")
        else:
            accounts.update(args.name, active=args.cmd == "activate")
            print(f"{args.name} {args.cmd}d")
    except ServiceError as exc:
        print(f"lumenal users: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    return 0
