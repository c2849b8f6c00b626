"""The ``qgate`` command: operators' entry point (clients, audit) and the long-running processes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _clients_create(args: argparse.Namespace) -> int:
    from api.clients import ClientStore
    from settings import get_settings
    from webhooks.config import secrets_of
    from workers.connections import get_redis

    try:
        client, secret = ClientStore(get_redis()).create(args.tenant, args.scopes.split())
    except ValueError as exc:
        print(f"qgate: {exc}", file=sys.stderr)
        return 2
    webhook_secret = secrets_of(get_settings(), get_redis()).create(client.client_id)
    print(json.dumps({"client_id": client.client_id, "client_secret": secret, "tenant": client.tenant,
                      "scopes": list(client.scopes), "webhook_secret": webhook_secret}))
    return 0


def _clients_rotate_webhook_secret(args: argparse.Namespace) -> int:
    """A new webhook secret; the old ones sign beside it until the grace period ends."""
    from datetime import datetime, timezone

    from api.clients import ClientStore
    from settings import get_settings
    from webhooks.config import secrets_of
    from workers.connections import get_redis

    if not ClientStore(get_redis()).exists(args.client_id):
        print(f"qgate: no client {args.client_id!r}", file=sys.stderr)
        return 2
    secret, until = secrets_of(get_settings(), get_redis()).rotate(args.client_id)
    previous_until = datetime.fromtimestamp(until, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    print(json.dumps({"client_id": args.client_id, "webhook_secret": secret,
                      "previous_secrets_valid_until": previous_until}))
    return 0


def _verifiers(vkeys: list[str] | None) -> list:
    """Public keys from --key VKEY arguments, or else from the local keyring."""
    from audit.keys import Keyring
    from audit.note import parse_vkey
    from settings import get_settings

    if vkeys:
        return [parse_vkey(vkey) for vkey in vkeys]
    settings = get_settings()
    return [parse_vkey(info.as_public()["vkey"]) for info in Keyring(settings.audit_keys_dir, settings.audit_origin).keys()]


def _audit_verify(args: argparse.Namespace) -> int:
    from audit.checkpoints import checkpoint_body
    from audit.keys import public_keys_by_kid
    from audit.note import open_note, parse_checkpoint
    from audit.verify import verify_file
    from settings import get_settings

    path = Path(args.log) if args.log else get_settings().audit_path
    verifiers = _verifiers(args.key)
    checkpoints = []
    for file in args.checkpoint or []:
        text = Path(file).read_text()
        body = open_note(text, verifiers).body if verifiers else checkpoint_body(text)
        checkpoints.append(parse_checkpoint(body))
    keys = public_keys_by_kid(verifiers) if verifiers else None
    result = verify_file(path, keys, checkpoints)
    print(json.dumps(result.as_dict()))
    if not result.valid:
        where = f"first bad entry at seq {result.first_bad_seq}: " if result.first_bad_seq is not None else ""
        print(f"qgate: audit log {path} is NOT intact: {where}{result.reason}", file=sys.stderr)
        return 1
    return 0


def _audit_verify_receipt(args: argparse.Namespace) -> int:
    from audit.receipt import ReceiptError, verify_receipt
    from audit.note import parse_vkey

    try:
        receipt = _json_file(args.file, "receipt")
        count = verify_receipt(receipt, [parse_vkey(vkey) for vkey in args.key])
    except (ReceiptError, ValueError) as exc:
        print(f"qgate: receipt does NOT verify: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"valid": True, "job_id": receipt["job_id"], "entries": count}))
    return 0


def _audit_keys(args: argparse.Namespace) -> int:
    from audit.keys import Keyring
    from settings import get_settings

    settings = get_settings()
    keyring = Keyring(settings.audit_keys_dir, settings.audit_origin)
    if args.action == "rotate":
        signer = keyring.rotate()
        print(json.dumps({"rotated": True, "kid": signer.kid}))
    print(json.dumps({"keys": [info.as_public() for info in keyring.keys()]}))
    return 0


def _replay(args: argparse.Namespace) -> int:
    """Re-run a finished job; exit 0 when the answer is identical, 1 when it differs, 2 when refused."""
    from solvers.replay import FingerprintMismatch, NotReplayable, replay

    try:
        record, problem = _replay_inputs(args)
        adapter = _qpu_adapter(record) if record["solver"].get("lane") == "qpu" else None
        report = replay(problem, fingerprint_=record["fingerprint"], solver=record["solver"],
                        provenance=record["provenance"], result=record["result"],
                        time_limit_s=_replay_time_limit_s(record), adapter=adapter,
                        job_id=record.get("job_id"))
    except (FingerprintMismatch, NotReplayable, ValueError, OSError) as exc:
        if args.json:
            print(json.dumps({"identical": False, "refused": str(exc)}))
        print(f"qgate: replay refused: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"{'identical' if report.identical else 'DIFFERS'}: job {report.job_id} on "
              f"{report.solver.get('lane')}/{report.solver.get('id')} {report.solver.get('version')}, seed {report.seed}")
        for line in report.differences:
            print(f"  difference: {line}")
        for line in report.caveats:
            print(f"  note: {line}")
    return 0 if report.identical else 1


REPLAY_COUNTED_MIN_S = 60.0


def _replay_time_limit_s(record: dict) -> float:
    """The job's budget; at least a minute for a search its record fixes by counts (QAOA's evaluations,
    PyVRP's iterations), which ends at the same point however long it may take, while a cold process
    sets its simulator up in more than the second a sync-path job (budget <= 1 s) had in a warm worker."""
    budget_s = max(1.0, (record.get("budget_ms") or 30_000) / 1000)
    details = (record.get("provenance") or {}).get("solver_details") or {}
    counted = (details.get("quantum") or {}).get("planned_evaluations") is not None or bool(details.get("iterations"))
    return max(budget_s, REPLAY_COUNTED_MIN_S) if counted else budget_s


def _replay_inputs(args: argparse.Namespace) -> tuple[dict, dict]:
    """The job's record and problem: from Redis for a job id, from the files for an auditor."""
    if args.job_id:
        from jobs.store import JobStore
        from settings import get_settings
        from workers.connections import get_redis

        store = JobStore(get_redis(), get_settings().job_ttl_s)
        job = store.get(args.job_id)
        if job is None:
            raise ValueError(f"no job {args.job_id!r} (unknown, or expired after QGATE_JOB_TTL_S)")
        if job.status != "succeeded" or job.solver is None:
            raise ValueError(f"job {args.job_id} {job.status}: only a job that succeeded can be replayed")
        raw = store.canonical_problem(job.provenance.fingerprint)
        problem = json.loads(raw) if raw else store.problem(args.job_id)
        if problem is None:
            raise ValueError(f"the problem of job {args.job_id} is no longer stored")
        record = {"job_id": job.job_id, "fingerprint": job.provenance.fingerprint, "budget_ms": job.latency_budget_ms,
                  "solver": job.solver, "provenance": job.provenance.model_dump(), "result": job.result or {}}
        return record, problem
    from audit.note import parse_vkey
    from audit.receipt import verify_receipt
    from audit.replay_record import record_from_receipt

    if not (args.problem and args.receipt):
        raise ValueError("give a JOB_ID, or both --problem FILE and --receipt FILE")
    receipt = _json_file(args.receipt, "receipt")
    if args.key:
        verify_receipt(receipt, [parse_vkey(vkey) for vkey in args.key])
    problem = _json_file(args.problem, "problem")
    if isinstance(problem, dict) and isinstance(problem.get("problem"), dict):
        problem = problem["problem"]  # a whole solve body
    return record_from_receipt(receipt), problem


def _json_file(path: str, what: str) -> Any:
    """A file's JSON; ValueError (a refusal) for one that is not, or nests too deep to read."""
    try:
        return json.loads(Path(path).read_text())
    except RecursionError:
        raise ValueError(f"the {what} file nests too deeply to be read") from None
    except ValueError as exc:
        raise ValueError(f"the {what} file is not JSON: {str(exc)[:200]}") from None


def _qpu_adapter(record: dict):  # type: ignore[no-untyped-def]
    """The device the job ran on: an emulated one by its name, else the configured provider's."""
    from solvers.qpu import EmulatedQpu
    from workers.attempt import solvers_for

    backend = str((record["provenance"].get("solver_details") or {}).get("backend") or "")
    if backend.startswith("fake_"):
        return EmulatedQpu(backend)
    return solvers_for("qpu")[0].adapter


def _faults(args: argparse.Namespace) -> int:
    import getpass

    from routing.faults import FaultBoard, FaultSpecError, parse_items
    from solvers.registry import LANES
    from settings import get_settings
    from workers.connections import get_redis

    board = FaultBoard(get_redis(), get_settings().faults)
    by = getattr(args, "by", None) or getpass.getuser()
    try:
        if args.action == "set":
            board.set(parse_items(args.drills), by)
        elif args.action == "clear":
            unknown = sorted(set(args.lanes) - set(LANES))
            if unknown:
                raise FaultSpecError(f"unknown lane {unknown[0]!r} (lanes: {', '.join(LANES)})")
            board.clear(args.lanes or LANES, by, to_default=args.default)
    except FaultSpecError as exc:
        print(f"qgate: faults: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(board.show()))
    return 0


def _limits(args: argparse.Namespace) -> int:
    """``qgate limits set``: a tenant's (or business unit's) QPU allowances; ``show``: every allowance and usage."""
    from jobs.spend import Allowance, SpendBook, SpendError
    from workers.connections import get_redis

    if args.action == "set":
        why = _limits_scope_problem(args.tenant, args.business_unit)
        if why:
            print(f"qgate: limits: {why}", file=sys.stderr)
            return 2
    book = SpendBook(get_redis())
    if args.action == "show":
        print(json.dumps({"limits": book.report(args.tenant)}))
        return 0
    values = {name: getattr(args, f"qpu_{name}") for name in
              ("usd_per_day", "shots_per_day", "usd_per_month", "shots_per_month")}
    try:
        allowance = Allowance.of({k: v for k, v in values.items() if v is not None}, "limits")
    except SpendError as exc:
        print(f"qgate: limits: {exc}", file=sys.stderr)
        return 2
    if allowance.empty:
        print("qgate: limits: give at least one --qpu-* allowance", file=sys.stderr)
        return 2
    stored = book.set(args.tenant, args.business_unit, allowance)
    print(json.dumps({"tenant": args.tenant, "business_unit": args.business_unit,
                      **{k: v for k, v in stored.__dict__.items() if v is not None}}))
    return 0


def _limits_scope_problem(tenant: str, business_unit: str | None) -> str | None:
    """Why (tenant, business unit) can scope no job's spend, or None. The book keys a unit's allowance
    as ``tenant/unit``: a "tenant" holding a slash would cap another tenant's unit."""
    from api.schemas import MAX_METADATA_TEXT
    from api.tokens import is_tenant

    if not is_tenant(tenant):
        return f"not a tenant name: {tenant[:80]!r}"
    if business_unit is not None and not 1 <= len(business_unit) <= MAX_METADATA_TEXT:
        return f"business unit: 1 to {MAX_METADATA_TEXT} characters (a job's metadata.business_unit)"
    return None


def _policy_check(args: argparse.Namespace) -> int:
    """Compile the policy with its data, make one decision, and run the Rego tests (test_ rules) of the
    policy file and of ``*_test.rego`` beside it; exit 0 only when all of that worked."""
    from pathlib import Path

    from policy.engine import PolicyBundle, PolicyError, run_tests

    policy, data = Path(args.file), Path(args.data)
    try:
        bundle = PolicyBundle.load(policy, data)
        folder = policy if policy.is_dir() else policy.parent
        tests = [] if policy.is_dir() else sorted(p for p in folder.glob("*_test.rego") if p != policy)
        results = run_tests(policy, data, tests)
    except PolicyError as exc:
        print(json.dumps({"valid": False, "error": str(exc)}))
        return 1
    failed = [name for name, passed in results if not passed]
    print(json.dumps({"valid": not failed, "sha256": bundle.sha256, "tests": len(results), "failed": failed}))
    return 1 if failed else 0


def _shadow(args: argparse.Namespace) -> int:
    """An operator's default shadow lanes per tenant (a solve body's own ``shadow`` overrides them)."""
    import getpass

    from api.tokens import is_tenant
    from audit.channel import emit
    from orchestrator import shadow
    from solvers.registry import LANES
    from workers.connections import get_redis

    client = get_redis()
    if args.action in ("set", "clear"):
        lanes = [lane for item in (getattr(args, "lanes", None) or []) for lane in item.split(",") if lane]
        if args.action == "set" and not lanes:
            print("qgate: shadow: give at least one lane (qgate shadow clear removes them)", file=sys.stderr)
            return 2
        unknown = sorted(set(lanes) - set(LANES))
        if not is_tenant(args.tenant) or unknown or len(set(lanes)) != len(lanes):
            why = f"unknown lane {unknown[0]!r} (lanes: {', '.join(LANES)})" if unknown else (
                "each lane at most once" if is_tenant(args.tenant) else f"not a tenant name: {args.tenant!r}")
            print(f"qgate: shadow: {why}", file=sys.stderr)
            return 2
        shadow.set_defaults(client, args.tenant, lanes if args.action == "set" else [])
        emit(client, "shadow.defaults_changed", job_id=None, tenant=args.tenant, lanes=lanes if args.action == "set" else [],
             by=getattr(args, "by", None) or getpass.getuser())
    print(json.dumps(shadow.all_defaults(client)))
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


def _solve(args: argparse.Namespace) -> int:
    import os
    import time

    import requests

    from solvers.instances import load_instance

    try:
        body = load_instance(Path(args.file))
    except (OSError, ValueError) as exc:
        print(f"qgate: {exc}", file=sys.stderr)
        return 2
    if args.lane:
        body["solver"] = args.lane
    if args.seed is not None:
        body["seed"] = args.seed
    url = args.url.rstrip("/")
    token = args.token or os.environ.get("QGATE_TOKEN")
    if not token:
        client_id, secret = os.environ.get("QGATE_CLIENT_ID"), os.environ.get("QGATE_CLIENT_SECRET")
        if not (client_id and secret):
            print("qgate: set QGATE_TOKEN, or QGATE_CLIENT_ID and QGATE_CLIENT_SECRET", file=sys.stderr)
            return 2
        reply = requests.post(f"{url}/oauth/token", data={"grant_type": "client_credentials"},
                              auth=(client_id, secret), timeout=30)
        if reply.status_code != 200:
            print(f"qgate: token request failed: {reply.status_code} {reply.text}", file=sys.stderr)
            return 1
        token = reply.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Latency-Budget-Ms": str(args.budget_ms)}
    reply = requests.post(f"{url}/api/v1/quantum/solve", json=body, headers=headers, timeout=args.budget_ms / 1000 + 30)
    if reply.status_code == 202:
        track = url + reply.json()["track_url"]
        deadline = time.monotonic() + args.budget_ms / 1000 + 30
        while time.monotonic() < deadline:
            reply = requests.get(track, headers=headers, timeout=30)
            if reply.status_code != 200 or reply.json()["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.5)
    print(json.dumps(reply.json(), indent=2))
    if reply.status_code >= 400:
        return 1
    return 0 if reply.json().get("status") == "succeeded" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qgate", description="qgate gateway operations")
    commands = parser.add_subparsers(dest="command", required=True)

    clients = commands.add_parser("clients", help="OAuth clients").add_subparsers(dest="action", required=True)
    create = clients.add_parser("create", help="create a client and print its secret once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", required=True, help='space-separated, e.g. "quantum:solve solver:heuristic"')
    create.set_defaults(func=_clients_create)
    rotate = clients.add_parser("rotate-webhook-secret",
                                help="a new webhook secret, printed once; the old one stays valid for "
                                     "QGATE_WEBHOOK_SECRET_GRACE_HOURS")
    rotate.add_argument("client_id")
    rotate.set_defaults(func=_clients_rotate_webhook_secret)

    audit = commands.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    verify = audit.add_parser("verify", help="check the hash chain; exit 1 naming the first bad entry")
    verify.add_argument("--log", help="path of the log (default: QGATE_AUDIT_PATH)")
    verify.add_argument("--checkpoint", action="append", metavar="FILE",
                        help="a signed checkpoint the log's first N entries must hash to (repeatable)")
    verify.add_argument("--key", action="append", metavar="VKEY",
                        help="a verifier key (name+id+key) for signatures (default: the local keyring)")
    verify.set_defaults(func=_audit_verify)
    receipt = audit.add_parser("verify-receipt", help="check a saved job receipt offline")
    receipt.add_argument("file")
    receipt.add_argument("--key", action="append", required=True, metavar="VKEY")
    receipt.set_defaults(func=_audit_verify_receipt)
    keys = audit.add_parser("keys", help="audit signing keys").add_subparsers(dest="action", required=True)
    keys.add_parser("rotate", help="start a new signing key; old signatures keep verifying").set_defaults(
        func=_audit_keys)
    keys.add_parser("list", help="list signing keys").set_defaults(func=_audit_keys)

    solve = commands.add_parser("solve", help="submit a TSPLIB/VRPLIB or JSON problem to a running gateway")
    solve.add_argument("file", help=".vrp, .tsp (TSPLIB/VRPLIB) or .json (a problem or a whole solve body)")
    solve.add_argument("--url", default="http://127.0.0.1:8000")
    solve.add_argument("--lane", choices=["auto", "qpu", "sim", "heuristic"], help="the first lane to try")
    solve.add_argument("--budget-ms", type=int, default=30_000)
    solve.add_argument("--seed", type=int)
    solve.add_argument("--token", help="a bearer token (else QGATE_TOKEN, or QGATE_CLIENT_ID/SECRET)")
    solve.set_defaults(func=_solve)

    replay_cmd = commands.add_parser("replay", help="re-run a finished job and say whether its answer is identical")
    replay_cmd.add_argument("job_id", nargs="?", help="a job in this gateway's Redis")
    replay_cmd.add_argument("--problem", metavar="FILE", help="the problem JSON (an auditor's copy)")
    replay_cmd.add_argument("--receipt", metavar="FILE", help="the job's receipt (GET /api/v1/audit/jobs/ID/receipt)")
    replay_cmd.add_argument("--key", action="append", metavar="VKEY", help="check the receipt against this key first")
    replay_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    replay_cmd.set_defaults(func=_replay)

    faults = commands.add_parser("faults", help="fault drills of the running fleet").add_subparsers(
        dest="action", required=True)
    fault_set = faults.add_parser("set", help="e.g. qpu.delay_ms=8000 qpu.fail_rate=0.3 qpu.delay_jitter=0.5")
    fault_set.add_argument("drills", nargs="+", metavar="LANE.KNOB=VALUE")
    fault_clear = faults.add_parser("clear", help="stop the drills of the lanes named (default: every lane)")
    fault_clear.add_argument("lanes", nargs="*", metavar="LANE")
    fault_clear.add_argument("--default", action="store_true", help="return to QGATE_FAULTS instead")
    for sub in (fault_set, fault_clear):
        sub.add_argument("--by", help="who makes the change, for the audit log (default: the OS user)")
    faults.add_parser("show", help="each lane's drill and where it comes from")
    for sub in faults.choices.values():
        sub.set_defaults(func=_faults)

    limits = commands.add_parser("limits", help="QPU spend allowances").add_subparsers(dest="action", required=True)
    limit_set = limits.add_parser("set", help="a tenant's (or business unit's) QPU allowances per UTC day and month")
    limit_set.add_argument("--tenant", required=True)
    limit_set.add_argument("--business-unit", default=None, help="metadata.business_unit of the jobs it covers")
    limit_set.add_argument("--qpu-usd-per-day", type=float)
    limit_set.add_argument("--qpu-shots-per-day", type=int)
    limit_set.add_argument("--qpu-usd-per-month", type=float)
    limit_set.add_argument("--qpu-shots-per-month", type=int)
    limit_set.set_defaults(func=_limits)
    limit_show = limits.add_parser("show", help="each allowance with what is reserved, spent and left")
    limit_show.add_argument("--tenant", default=None)
    limit_show.set_defaults(func=_limits)
    policy = commands.add_parser("policy", help="the Rego policy").add_subparsers(dest="action", required=True)
    check = policy.add_parser("check", help="compile a policy with its data and run its Rego tests")
    check.add_argument("file", help="the policy (.rego file, or a folder of them)")
    check.add_argument("--data", required=True, help="the policy data (JSON)")
    check.set_defaults(func=_policy_check)
    shadows = commands.add_parser("shadow", help="tenants' default shadow lanes").add_subparsers(
        dest="action", required=True)
    shadow_set = shadows.add_parser("set", help="e.g. --tenant acme --lanes qpu (or qpu,sim)")
    shadow_set.add_argument("--lanes", nargs="+", required=True, metavar="LANE")
    shadow_clear = shadows.add_parser("clear", help="no default shadow lanes for the tenant")
    for sub in (shadow_set, shadow_clear):
        sub.add_argument("--tenant", required=True)
        sub.add_argument("--by", help="who makes the change, for the audit log (default: the OS user)")
    shadows.add_parser("show", help="every tenant's default shadow lanes")
    for sub in shadows.choices.values():
        sub.set_defaults(func=_shadow)

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
