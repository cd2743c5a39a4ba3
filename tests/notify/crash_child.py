"""Child process for the hard-crash test: enqueue N notifications, deliver, get SIGKILLed."""

from __future__ import annotations

import asyncio
import sys

from tests.notify.conftest import NS, channel, notification

from klaxon.notify import DictSecretResolver, MemoryStatusSink, Notifier


async def main(path: str, url: str, count: int) -> None:
    notifier = Notifier(
        path,
        DictSecretResolver(),
        MemoryStatusSink(),
        concurrency=4,
    )
    spec = {"type": "webhook", "webhook": {"url": url}, "retry": {"initialBackoff": "50ms"}}
    await notifier.set_channel(NS, "hook", channel(spec))
    for i in range(count):
        await notifier.handle(notification(i))
    print("enqueued", flush=True)
    await notifier.start()
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
