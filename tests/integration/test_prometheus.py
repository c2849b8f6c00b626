"""/metrics as Prometheus reads it: `promtool check metrics` on real output of a stack that ran real jobs,
the shipped alerting rules (`promtool check rules`, `promtool test rules`) and the Grafana dashboard's
queries against the metric families /metrics actually exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import requests
import yaml

from tests.integration import problems
from tests.integration.stack import ROOT, Stack

OPS = ROOT / "ops"
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")
# PromQL words that look like metric names but are functions, keywords or label names.
NOT_METRICS = {"qgate"}


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool missing: make test runs scripts/ensure-promtool (Debian's prometheus package)"
    return found


@pytest.fixture(scope="module")
def metrics_text(stack: Stack, token: str) -> str:
    """/metrics after real jobs: a sync heuristic answer, an async sim circuit, a qpu->sim fallback."""
    sync = stack.solve(token, {"problem": problems.tsp(8)}, budget_ms=1000)
    assert sync.status_code == 200, sync.text
    circuit = stack.solve(token, {"problem": problems.circuit(), "solver": "sim"}, budget_ms=20_000)
    assert circuit.status_code == 202, circuit.text
    assert stack.wait_job(token, circuit.json()["job_id"])["status"] == "succeeded"
    reply = requests.get(stack.url + "/metrics", headers=stack.headers(token), timeout=10)
    assert reply.status_code == 200
    return reply.text


def _families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def _family_of(name: str, families: set[str]) -> str | None:
    if name in families:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return None


def _metric_names(expr: str) -> set[str]:
    """qgate_* identifiers in a PromQL expression (recording-rule names hold a colon and are skipped)."""
    return {m for m in re.findall(r"(?<![\w:])qgate_[a-z0-9_]+(?![\w:])", expr)} - NOT_METRICS


def test_promtool_accepts_real_metrics_with_labelled_histograms(metrics_text: str) -> None:
    done = subprocess.run([_promtool(), "check", "metrics"], input=metrics_text, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    for family in ("qgate_job_duration_seconds", "qgate_attempt_duration_seconds", "qgate_queue_wait_seconds"):
        assert f"# TYPE {family} histogram" in metrics_text
    assert re.search(r'qgate_job_duration_seconds_bucket\{kind="tsp",lane="heuristic",le="\+Inf",'
                     r'outcome="succeeded"\} [1-9]', metrics_text), metrics_text
    assert re.search(r'qgate_attempt_duration_seconds_count\{kind="circuit",lane="sim",outcome="succeeded"\} [1-9]',
                     metrics_text)
    assert re.search(r'qgate_queue_wait_seconds_count\{kind="circuit",lane="sim",outcome="succeeded"\} [1-9]',
                     metrics_text)
    assert re.search(r'qgate_jobs_budget_total\{budget="met",lane="heuristic"\} [1-9]', metrics_text)
    # The audit writer drains the stream and checkpoints; breaker state is a gauge per lane that changed.
    assert re.search(r"^qgate_audit_writer_lag \d", metrics_text, re.MULTILINE)
    assert re.search(r"^qgate_audit_stream_length \d", metrics_text, re.MULTILINE)
    for family in ("qgate_audit_checkpoint_age_seconds", "qgate_audit_append_failures", "qgate_webhook_deliveries",
                   "qgate_breaker_state", "qgate_canary_fidelity"):
        assert re.search(rf"^# TYPE {family}(_total)? (counter|gauge)$", metrics_text, re.MULTILINE), family


def test_alerting_rules_pass_promtool_check_and_unit_tests() -> None:
    done = subprocess.run([_promtool(), "check", "rules", str(OPS / "prometheus" / "alerts.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"], cwd=OPS / "prometheus",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {rule["alert"] for group in yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}
    assert {"QgateLaneErrorRate", "QgateSloFastBurn", "QgateSloSlowBurn", "QgateAuditWriterLag",
            "QgateAuditAppendFailures", "QgateCanaryFidelityDrop", "QgateBreakerOpenTooLong"} <= alerts


def test_rules_and_dashboard_query_only_metrics_that_exist(metrics_text: str) -> None:
    families = _families(metrics_text)
    dashboard = json.loads((OPS / "grafana" / "qgate.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(exprs) > 20
    used = set().union(*(_metric_names(e) for e in exprs))
    unknown = sorted(name for name in used if _family_of(name, families) is None)
    assert not unknown, f"queried but not exposed by /metrics: {unknown}"
    # every histogram family the console issue asks for appears on the dashboard
    assert {"qgate_job_duration_seconds_bucket", "qgate_attempt_duration_seconds_bucket",
            "qgate_queue_wait_seconds_bucket"} <= used
