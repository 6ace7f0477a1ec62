"""Prometheus metrics: one registry per app so tests can build many apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "ymera_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "ymera_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.http_in_flight = Gauge(
            "ymera_http_requests_in_flight", "Requests being served.", registry=self.registry
        )
        self.push_circuits_open = Gauge(
            "ymera_push_circuits_open",
            "HTTP push agents whose circuit breaker is open on this replica.",
            registry=self.registry,
        )
        self.push_deliveries = Counter(
            "ymera_push_deliveries_total",
            "Task deliveries to HTTP push agents by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.task_writer_commits = Counter(
            "ymera_task_writer_commits_total",
            "Transactions committed by the task engine's group-commit writer.",
            registry=self.registry,
        )
        self.task_writer_writes = Counter(
            "ymera_task_writer_writes_total",
            "Submissions and agents' reports those transactions carried (writes per "
            "commit = this / ymera_task_writer_commits_total).",
            registry=self.registry,
        )
        self.worker_messages_sent = Counter(
            "ymera_worker_messages_sent_total",
            "WebSocket messages sent to workers (several frames travel in one `batch`).",
            registry=self.registry,
        )
        self.worker_frames_sent = Counter(
            "ymera_worker_frames_sent_total",
            "Protocol frames sent to workers.",
            registry=self.registry,
        )
        self.events_published = Counter(
            "ymera_events_published_total",
            "Events sequenced and published by the outbox relay.",
            registry=self.registry,
        )
        # Per-agent series: `agent` is the agent's name for at most
        # `agents.metrics_max_agent_labels` agents, then "_other" (docs/agents-health.md).
        self.agent_tasks = Counter(
            "ymera_agent_tasks_total",
            "Finished tasks by agent and outcome (success, failure).",
            ["agent", "outcome"],
            registry=self.registry,
        )
        self.agent_task_latency = Histogram(
            "ymera_agent_task_latency_seconds",
            "Time agents took per task.",
            ["agent"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
        )
        self.agent_load = Gauge(
            "ymera_agent_load",
            "Tasks in progress per agent (refreshed from the database every 15 s).",
            ["agent"],
            registry=self.registry,
        )
        self.agent_health_checks = Counter(
            "ymera_agent_health_checks_total",
            "Active health-check probes of http/a2a agents by outcome (ok, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.agent_ejections = Counter(
            "ymera_agent_ejections_total",
            "Agents ejected after consecutive failed health checks.",
            registry=self.registry,
        )
