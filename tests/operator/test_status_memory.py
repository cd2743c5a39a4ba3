"""The operator's memory of its own status writes (Runtime.written) against what the watch shows.

Found on the real control plane: a channel went Ready=False (DeliveryFailing) with the watch
event of that write arriving before the PATCH response, so the write was not remembered, while
the first write (Ready=True) still was. On recovery the stale memory said Ready=True already and
the channel stayed Ready=False for good.
"""

from __future__ import annotations

from typing import Any, cast

from klaxon.kube.client import KubeClient
from klaxon.operator.rules import previous_status
from klaxon.operator.runtime import Options, Runtime

KIND = "NotificationChannel"
KEY = ("team", "hook")


def ready(status: str, reason: str) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": reason}


def body(version: str, conditions: list[dict[str, Any]], queue: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": conditions}
    if queue is not None:
        status["queue"] = queue
    meta = {"namespace": KEY[0], "name": KEY[1], "uid": "u1", "resourceVersion": version, "generation": 1}
    return {"metadata": meta, "spec": {}, "status": status}


class Watched:
    """What the watch has shown so far, as the channel index holds it."""

    def __init__(self, rt: Runtime) -> None:
        self.index: dict[Any, list[dict[str, Any]]] = {}
        rt.indices["klaxon_channels"] = self.index

    def show(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.index[KEY] = [obj]
        return obj


def runtime() -> Runtime:
    return Runtime(Options(), cast(KubeClient, None))


def test_a_write_the_watch_showed_first_replaces_an_older_remembered_write() -> None:
    rt = runtime()
    watch = Watched(rt)
    first = watch.show(body("1", []))
    # Ready=True written; the response (version 2) comes before the watch event: remembered.
    rt.remember_written(KIND, first["metadata"], "2", {"conditions": [ready("True", "Ready")]})
    assert previous_status(rt, first, KIND)["conditions"] == [ready("True", "Ready")]
    # Ready=False written; this time the watch event (version 3) beats the response.
    failing = watch.show(body("3", [ready("False", "DeliveryFailing")], {"failingSince": "t"}))
    rt.remember_written(KIND, failing["metadata"], "3", {"conditions": [ready("False", "DeliveryFailing")]})
    # The evaluator reports recovery (version 4): the operator must see Ready=False to flip it back.
    recovered = watch.show(body("4", [ready("False", "DeliveryFailing")], {"pending": 0}))
    assert previous_status(rt, recovered, KIND)["conditions"] == [ready("False", "DeliveryFailing")]


def test_a_remembered_write_beats_a_stale_body_until_the_watch_shows_it() -> None:
    rt = runtime()
    watch = Watched(rt)
    stale = watch.show(body("1", [ready("True", "Ready")]))
    rt.remember_written(KIND, stale["metadata"], "2", {"conditions": [ready("False", "SecretNotFound")]})
    assert previous_status(rt, stale, KIND)["conditions"] == [ready("False", "SecretNotFound")]
    caught_up = watch.show(body("2", [ready("False", "SecretNotFound")]))
    rt.forget_written(KIND, KEY, caught_up["metadata"])
    assert rt.written == {}
    # Later writers of other fields (the evaluator's queue) come from the body.
    later = watch.show(body("5", [ready("False", "SecretNotFound")], {"pending": 2}))
    assert previous_status(rt, later, KIND)["queue"] == {"pending": 2}
