"""Celery settings. Redis is the broker; job state and results live in qgate's own job store."""

from kombu import Queue

from settings import LANES, get_settings

_settings = get_settings()

broker_url = _settings.redis_url
broker_connection_timeout = 2
broker_connection_retry_on_startup = True
# A message taken by a worker whose whole process dies comes back after this long; by then the watchdog
# has long moved the job on (its lease is tied to the budget), and the stale delivery is dropped.
broker_transport_options = {"visibility_timeout": 3600}
task_publish_retry_policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}

task_queues = [Queue(lane, routing_key=lane) for lane in LANES]
task_default_queue = "heuristic"
task_routes = {f"qgate.solve.{lane}": {"queue": lane} for lane in LANES}
task_ignore_result = True
task_acks_late = True
task_reject_on_worker_lost = False
worker_prefetch_multiplier = 1
worker_hijack_root_logger = False
worker_send_task_events = False
task_serializer = "json"
accept_content = ["json"]
imports = ("workers.heartbeat", "workers.qpu", "workers.sim", "workers.heuristic")
