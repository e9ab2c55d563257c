"""The metrics exporter during real jobs (a real worker, broker and database), and the shipped
dashboard and alert rules checked against what the exporter and the API really export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from auteur.core.queues import ALL_QUEUES
from credits.services.ledger import credit_grant
from credits.tasks import ledger_check
from devstack import REPO_ROOT
from devstack.ports import free_port
from devstack.process_group import stop_group
from jobs.models import JobStatus
from jobs.tasks import deadlines, reap
from tests.factories import ProjectFactory
from tests.jobs.conftest import subprocess_env, upload_local, wait_for, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TOKEN = "metrics-test-token-0123456789"
ALERTS = REPO_ROOT / "deploy/prometheus/alerts.yml"
DASHBOARD = REPO_ROOT / "deploy/grafana/auteur.json"
EXPORTER_FAMILIES = (
    "auteur_celery_queue_length", "auteur_celery_queue_workers", "auteur_celery_workers_online",
    "auteur_celery_tasks", "auteur_celery_task_runtime_seconds", "auteur_celery_task_queue_wait_seconds",
    "auteur_reaper_jobs", "auteur_jobs", "auteur_jobs_ended", "auteur_job_submit_to_start_seconds",
    "auteur_job_start_to_end_seconds", "auteur_job_refunds", "auteur_gpu_seconds", "auteur_credits_charged",
    "auteur_credits_refunded", "auteur_webhook_delivery_attempts", "auteur_ledger_check_problems",
    "auteur_ledger_check_last_run_timestamp_seconds", "auteur_exporter_source_up",
)
METRIC_NAME = re.compile(r"\b(?:auteur|django)_[a-z0-9_]+")


class Scrape:
    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items())

    @property
    def names(self) -> set[str]:
        return {s.name for s in self.samples} | set(self.families)


@pytest.fixture
def exporter(start_worker: Any) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "metrics_exporter", "--port", str(port), "--interval", "0.5"],
        env=subprocess_env(AUTEUR_METRICS_BACKFILL_SECONDS="0"), cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def up() -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(up, 60)
        yield url
    finally:
        stop_group(proc, 10)


def scrape(url: str) -> Scrape:
    return Scrape(requests.get(url, timeout=5).text)


def submit(client: Any, body: dict[str, Any]) -> str:
    response = client.post("/api/v1/jobs/compression", body, format="json")
    assert response.status_code == 202, response.json()
    return str(response.json()["job_id"])


def test_exporter_shows_every_family_during_real_jobs_and_the_deploy_files_use_only_those(
    exporter, start_worker, auth_client, client, user, samples, settings
):
    credit_grant(user=user, amount=500, type="bonus", description="test")
    project = ProjectFactory.create(user=user, name="p", resolution="640x360")
    worker = start_worker()
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    body = {"project_id": str(project.pk), "media_id": str(video.pk), "preset": "480p"}
    assert wait_terminal(submit(auth_client, body)).status == JobStatus.COMPLETED

    # A second worker that fails every compression permanently: a failed, refunded job.
    worker.stop()
    start_worker(AUTEUR_FAULT_INJECTION="compression:permanent=1.0", DJANGO_SETTINGS_MODULE="bench.settings")
    failed = wait_terminal(submit(auth_client, {**body, "cache": False}))  # a fresh run, not the first one's result
    assert failed.status == JobStatus.FAILED and failed.credits_refunded
    # The deadline sweep beat runs every few seconds sends no task events (Flower lists users' work,
    # not the clock); sent first on the reaper's queue, it has run by the time the reaper has.
    deadlines.delay()
    reap.delay()
    ledger_check()

    def complete() -> Scrape | None:
        got = scrape(exporter)
        ready = (got.value("auteur_jobs_ended_total", type="compression", state="failed") >= 1
                 and got.value("auteur_celery_tasks_total", task="jobs.reap", event="succeeded") >= 1
                 and got.value("auteur_celery_queue_workers", queue="render") >= 1)
        return got if ready else None

    got = wait_for(complete, 60)
    missing = [name for name in EXPORTER_FAMILIES if name not in got.families]
    assert missing == []
    assert got.value("auteur_jobs_ended_total", type="compression", state="completed") >= 1
    assert got.value("auteur_job_refunds_total", error_code=failed.error_code) >= 1
    assert got.value("auteur_job_start_to_end_seconds_count", type="compression") >= 1
    assert got.value("auteur_job_submit_to_start_seconds_count", type="compression") >= 1
    assert got.value("auteur_credits_charged_total") > 0 and got.value("auteur_credits_refunded_total") > 0
    assert got.value("auteur_celery_tasks_total", event="received") >= got.value(
        "auteur_celery_tasks_total", event="succeeded") > 0
    assert got.value("auteur_celery_task_runtime_seconds_count") > 0
    assert got.value("auteur_celery_tasks_total", task="jobs.deadlines") == 0
    assert got.value("auteur_celery_task_queue_wait_seconds_count", queue="render") >= 1
    assert {s.labels["queue"] for s in got.samples if s.name == "auteur_celery_queue_workers"} == set(ALL_QUEUES)
    assert got.value("auteur_celery_queue_workers", queue="render") >= 1
    assert got.value("auteur_celery_workers_online") >= 1
    assert got.value("auteur_ledger_check_problems") == 0
    assert got.value("auteur_exporter_source_up", source="database") == 1

    # The API's own families, scraped like Prometheus does.
    settings.AUTEUR_METRICS_TOKEN = TOKEN
    api = Scrape(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    exported = got.names | api.names
    for expr in deploy_expressions():
        unknown = set(METRIC_NAME.findall(expr)) - exported
        assert not unknown, (expr, unknown)


def deploy_expressions() -> list[str]:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [rule["expr"] for rule in rules] + [t["expr"] for p in panels for t in p["targets"]]


def test_alert_rules_are_well_formed_and_cover_each_operational_risk():
    doc = yaml.safe_load(ALERTS.read_text())
    names = set()
    for group in doc["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]) and rule["alert"] not in names
            names.add(rule["alert"])
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert "for" not in rule or re.fullmatch(r"\d+[smhd]", rule["for"])
            assert rule["expr"].count("(") == rule["expr"].count(")")
    assert {"AuteurQueueWaitHigh", "AuteurJobFailureRateHigh", "AuteurRefundsSpiking", "AuteurNoWorkerForQueue",
            "AuteurReaperFindsStuckJobs", "AuteurLedgerCheckFailing"} <= names


def test_dashboard_is_grafana_json_with_a_query_per_panel():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["type"] == "prometheus"
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("queue", "submit to start", "failure rate", "refund", "gpu seconds"):
        assert topic in titles
