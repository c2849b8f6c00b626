"""Celery settings. Redis is the broker; job state and results live in qgate's own job store."""

from kombu import Queue

from settings import LANES, get_settings
from solvers.registry import lane_queues

_settings = get_settings()

broker_url = _settings.redis_url
broker_connection_timeout = 2
broker_connection_retry_on_startup = True
# A message taken by a worker whose whole process dies comes back after this long; by then the watchdog
# has long moved the job on (its lease is tied to the budget), and the stale delivery is dropped.
# queue_order_strategy "priority": a worker polls its queues in the order given (-Q lane.interactive,lane),
# so an interactive attempt is taken before any batch attempt waiting on the same lane.
broker_transport_options = {"visibility_timeout": 3600, "queue_order_strategy": "priority"}
worker_consumer = "workers.consumer:PromptReconnectConsumer"
# Enough retries to publish across a Redis restart of a few seconds.
task_publish_retry_policy = {"max_retries": 8, "interval_start": 0, "interval_step": 0.25, "interval_max": 1.0}

# Webhook deliveries have their own queue and worker: a slow receiver never holds a lane worker.
task_queues = [Queue(queue, routing_key=queue) for lane in LANES for queue in lane_queues(lane)] + [
    Queue("webhooks", routing_key="webhooks")]
task_default_queue = "heuristic"
task_routes = {f"qgate.solve.{lane}": {"queue": lane} for lane in LANES} | {
    "qgate.webhooks.deliver": {"queue": "webhooks"}}
task_ignore_result = True
task_acks_late = True
# A message whose pool child died (SIGKILL, OOM, the hard limit) goes back on the queue instead of being
# acknowledged and lost. Redelivery is safe: a worker starts only the job's current attempt with time
# left (routing.fallback.begin_attempt), so a stale copy is dropped.
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# Each pool child warms its solvers up (qiskit, Aer, PyVRP, the QPU noise model) before it reports UP:
# measured 3-10 s on a loaded 2-core host, past billiard's default of 4 s, after which children were
# killed and respawned in a loop.
worker_proc_alive_timeout = 120
# Keep consuming through a broker restart instead of giving up after a few tries.
broker_connection_max_retries = None
# A running attempt goes on through a broker restart: its Redis calls retry within its lease, and the
# copy of its message that kombu restores to the queue is refused as stale when it is delivered again.
worker_cancel_long_running_tasks_on_connection_loss = False
worker_hijack_root_logger = False
worker_send_task_events = False
task_serializer = "json"
accept_content = ["json"]
imports = ("workers.heartbeat", "workers.qpu", "workers.sim", "workers.heuristic", "workers.webhooks")
