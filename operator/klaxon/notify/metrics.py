"""The notifier's metrics, read when scraped: what waits per channel, what was given up and why,
which channels fail, and whether the outbox is on disk.

Register on the process' registry: ``registry.register(NotifierCollector(notifier))``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .redact import LOG

if TYPE_CHECKING:
    from .notifier import Notifier

_CHANNEL = ["namespace", "channel"]


class NotifierCollector(Collector):
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def collect(self) -> Iterator[Metric]:
        n = self.notifier
        now = time.time()
        pending = GaugeMetricFamily(
            "klaxon_notifications_pending",
            "Notifications waiting for delivery (queued or being retried), per channel.",
            labels=_CHANNEL,
        )
        oldest = GaugeMetricFamily(
            "klaxon_notifications_oldest_pending_age_seconds",
            "Age of the oldest notification waiting for delivery, per channel with one waiting.",
            labels=_CHANNEL,
        )
        try:
            waiting = n.outbox.pending_by_channel()
        except sqlite3.Error as exc:  # a scrape never fails for it; the value is just missing
            LOG.warning("reading the outbox for metrics failed: %s", exc)
            waiting = {}
        for key in sorted(set(waiting) | set(n.channels)):
            count, created = waiting.get(key, (0, now))
            pending.add_metric(list(key), count)
            if count:
                oldest.add_metric(list(key), max(0.0, now - created))
        given_up = CounterMetricFamily(
            "klaxon_notifications_given_up",
            "Notifications given up: reason maxAge (not delivered within retry.maxAge), notRetryable "
            "(refused by the receiver), queueFull (oldest of a full queue), channelNotFound.",
            labels=[*_CHANNEL, "reason"],
        )
        for (ns, ch, reason), count in sorted(n.given_up.items()):
            given_up.add_metric([ns, ch, reason], count)
        delivered = CounterMetricFamily(
            "klaxon_notifications_delivered", "Notifications the receiver accepted.", labels=_CHANNEL
        )
        for key, count in sorted(n.delivered.items()):
            delivered.add_metric(list(key), count)
        failed = CounterMetricFamily(
            "klaxon_notification_attempts_failed",
            "Delivery attempts that failed (each retry counts).",
            labels=_CHANNEL,
        )
        for key, count in sorted(n.failed_attempts.items()):
            failed.add_metric(list(key), count)
        failing = GaugeMetricFamily(
            "klaxon_notification_channel_failing",
            "1 while deliveries to the channel fail (from the first failed attempt to the next success).",
            labels=_CHANNEL,
        )
        for key in sorted(set(n.channels) | set(n.failing)):
            failing.add_metric(list(key), 1.0 if key in n.failing else 0.0)
        on_disk = GaugeMetricFamily(
            "klaxon_notification_outbox_on_disk",
            "1 while the outbox is written to its file; 0 while the file cannot be written and the "
            "outbox lives in memory (lost on restart).",
        )
        on_disk.add_metric([], 0.0 if n.storage_problem else 1.0)
        yield from (pending, oldest, given_up, delivered, failed, failing, on_disk)
