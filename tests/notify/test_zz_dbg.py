import asyncio

from .test_http_receivers import deliver, notification


async def test_dbg2(make_notifier, receiver):
    def dump():
        for t in asyncio.all_tasks():
            print("TASK", t.get_name())
            t.print_stack(limit=10)

    asyncio.get_running_loop().call_later(3, dump)
    spec = {"type": "webhook", "webhook": {"url": receiver.url}, "sendResolved": False}
    await deliver(
        make_notifier, receiver, spec, notification(), notification(state_from="Firing", state_to="Inactive")
    )
    print("DONE")
