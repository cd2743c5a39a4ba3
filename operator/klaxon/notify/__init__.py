"""Notifications: the only package that sends them (DESIGN §2).

Entry point for the evaluator::

    notifier = Notifier("/var/lib/klaxon/outbox.sqlite", secrets=resolver, status=sink)
    await notifier.start()
    await notifier.set_channel(ns, name, NotificationChannelSpec, annotations)   # from the operator
    await notifier.set_rule(ns, name, AlertRuleSpec, annotations)               # mute, notify, ack
    await notifier.set_config(ns, name, AlertConfigSpec)                        # silences, SSRF opt-in
    decision = await notifier.handle(Notification(...))                        # each transition
    await notifier.stop()

``Notification`` (``model.py``) is one transition of one alert instance: rule namespace/name,
labels, annotations, ``state_from``/``state_to``, level, severity, value, time, ``dedup_key``,
``episode_id``, channels and ``source`` (metric | event). ``handle`` applies the pure policy
(``policy.py``: schedule, silences, mute, ack, cooldown, repeatInterval, sendResolved) and writes
the policy state and one outbox row per channel in one SQLite transaction (``outbox.py``);
a worker (``delivery.py``) delivers rows — at least once, each under a stable ``Idempotency-Key``
— with capped exponential backoff until delivered, superseded or older than the channel's
``retry.maxAge``, per-channel rate and in-flight limits and an SSRF guard; ``stats.py`` counts
outcomes and reports through ``StatusSink`` (delivery status, ``status.queue``, Events), and
``metrics.NotifierCollector`` exports them. ``registry.py`` holds the specs, ``readiness.py``
each channel's Ready condition; ``Notifier`` (``notifier.py``) is the façade over them.
Secrets come only through ``SecretResolver``.
Acknowledge with the AlertRule annotation ``klaxon.dev/ack`` (an RFC 3339 time: episodes that
began by then; or episode ids); request a test delivery with ``klaxon.dev/test-delivery: <token>``
on a NotificationChannel. Event rules go through ``klaxon.events.EventPipeline`` first.
"""

from .delivery import RetryPolicy
from .model import (
    DictSecretResolver,
    MemoryStatusSink,
    Notification,
    SecretError,
    SecretResolver,
    StatusSink,
)
from .notifier import TEST_ANNOTATION, Notifier
from .policy import Decision, KeyState, RulePolicy, decide, in_schedule, render_dedup_key
from .registry import ACK_ANNOTATION

__all__ = [
    "ACK_ANNOTATION",
    "TEST_ANNOTATION",
    "Decision",
    "DictSecretResolver",
    "KeyState",
    "MemoryStatusSink",
    "Notification",
    "Notifier",
    "RetryPolicy",
    "RulePolicy",
    "SecretError",
    "SecretResolver",
    "StatusSink",
    "decide",
    "in_schedule",
    "render_dedup_key",
]
