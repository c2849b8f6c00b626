"""The ``qgate`` command: operators' entry point (clients, audit) and the long-running processes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _clients_create(args: argparse.Namespace) -> int:
    from api.clients import ClientStore
    from jobs.connection import get_redis

    try:
        client, secret = ClientStore(get_redis()).create(args.tenant, args.scopes.split())
    except ValueError as exc:
        print(f"qgate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"client_id": client.client_id, "client_secret": secret, "tenant": client.tenant,
                      "scopes": list(client.scopes)}))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from audit.verify import verify_file
    from settings import get_settings

    path = Path(args.log) if args.log else get_settings().audit_path
    result = verify_file(path)
    print(json.dumps(result.as_dict()))
    if not result.valid:
        print(f"qgate: audit log {path} is NOT intact: first bad entry at seq {result.first_bad_seq}: "
              f"{result.reason}", file=sys.stderr)
        return 1
    return 0


def _watchdog(_: argparse.Namespace) -> int:
    from telemetry.logging import configure_logging
    from workers import watchdog

    configure_logging()
    watchdog.run()
    return 0


def _audit_worker(_: argparse.Namespace) -> int:
    from workers import audit_consumer

    audit_consumer.main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qgate", description="qgate gateway operations")
    commands = parser.add_subparsers(dest="command", required=True)

    clients = commands.add_parser("clients", help="OAuth clients").add_subparsers(dest="action", required=True)
    create = clients.add_parser("create", help="create a client and print its secret once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", required=True, help='space-separated, e.g. "quantum:solve solver:heuristic"')
    create.set_defaults(func=_clients_create)

    audit = commands.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    verify = audit.add_parser("verify", help="check the hash chain; exit 1 naming the first bad entry")
    verify.add_argument("--log", help="path of the log (default: QGATE_AUDIT_PATH)")
    verify.set_defaults(func=_audit_verify)

    commands.add_parser("watchdog", help="run the lease watchdog").set_defaults(func=_watchdog)
    commands.add_parser("audit-worker", help="run the audit writer").set_defaults(func=_audit_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # an operator gets one line, not a traceback
        name = type(exc).__name__
        print(f"qgate: {name}: {exc}", file=sys.stderr)
        return 3 if "Connection" in name else 1


if __name__ == "__main__":
    sys.exit(main())
