"""The AMI adapter against a fake AMI server: order, Cyrillic across reads, reconnect, ping."""

from __future__ import annotations

import asyncio

from pbx.ami.client import AmiClient, AmiEvent, AmiLink
from tests.fake_ami import FakeAmi

NAME = "Смирнова Мария Олеговна"


async def next_item(client: AmiClient, kind: type, timeout: float = 5.0):
    while True:
        item = await asyncio.wait_for(client.queue.get(), timeout)
        if isinstance(item, kind):
            return item


async def test_events_arrive_in_order_and_whole() -> None:
    fake = FakeAmi()
    await fake.start()
    client = AmiClient("127.0.0.1", fake.port, "u", "s")
    assert await client.start(wait=5)
    assert isinstance(await next_item(client, AmiLink), AmiLink)
    payload = b"".join(
        f"Event: UserEvent\r\nSeq: {i}\r\nCallerIDName: {NAME}\r\n\r\n".encode() for i in range(300)
    )
    await fake.send(payload, chunk=7)  # 7-byte reads cut most Cyrillic characters
    got = [await next_item(client, AmiEvent) for _ in range(300)]
    assert [int(e.headers["Seq"]) for e in got] == list(range(300))
    assert all(e.headers["CallerIDName"] == NAME for e in got)
    await client.stop()
    await fake.stop()


async def test_reconnects_after_the_server_drops_us() -> None:
    fake = FakeAmi()
    await fake.start()
    client = AmiClient("127.0.0.1", fake.port, "u", "s", backoff_min=0.05, backoff_max=0.2)
    assert await client.start(wait=5)
    assert (await next_item(client, AmiLink)).up
    fake.drop_all()
    assert not (await next_item(client, AmiLink)).up
    assert (await next_item(client, AmiLink)).up  # logged in again
    assert fake.logins == 2
    await fake.send(b"Event: FullyBooted\r\nStatus: ok\r\n\r\n")
    assert (await next_item(client, AmiEvent)).name == "FullyBooted"
    await client.stop()
    await fake.stop()


async def test_reconnects_when_asterisk_is_down_at_first() -> None:
    fake = FakeAmi()
    await fake.start()
    port = fake.port
    await fake.stop()
    client = AmiClient("127.0.0.1", port, "u", "s", backoff_min=0.05, backoff_max=0.2)
    assert not await client.start(wait=0.3)
    fake2 = FakeAmi()
    await fake2.start(port)
    assert await client.wait_connected(5)
    await client.stop()
    await fake2.stop()


async def test_unanswered_ping_drops_the_link() -> None:
    fake = FakeAmi()
    await fake.start()
    fake.answer_pings = False
    client = AmiClient(
        "127.0.0.1", fake.port, "u", "s", ping_interval=1, ping_timeout=0.5,
        backoff_min=0.05, backoff_max=0.1,
    )
    assert await client.start(wait=5)
    assert (await next_item(client, AmiLink)).up
    link = await next_item(client, AmiLink, timeout=6)
    assert not link.up
    assert client.manager is not None and client.manager.missed_pings == 1
    fake.answer_pings = True
    assert (await next_item(client, AmiLink, timeout=5)).up
    await client.stop()
    await fake.stop()


async def test_action_on_a_dead_link_fails_fast() -> None:
    fake = FakeAmi()
    await fake.start()
    client = AmiClient("127.0.0.1", fake.port, "u", "s", backoff_min=5)
    assert await client.start(wait=5)
    reply = await client.action({"Action": "CoreShowChannels"})
    assert isinstance(reply, list) and reply[-1]["EventList"] == "Complete"
    fake.drop_all()
    await next_item(client, AmiLink)
    await next_item(client, AmiLink)
    try:
        await client.action({"Action": "Ping"})
    except ConnectionError:
        pass
    else:
        raise AssertionError("an action on a dead link must fail")
    await client.stop()
    await fake.stop()


async def test_a_half_open_link_is_noticed_and_replaced() -> None:
    """Traffic silently dropped by the network (the socket stays open): the ping watchdog
    notices within ping interval + timeout, and the client logs in again."""
    from tests.blackhole_proxy import BlackholeProxy

    fake = FakeAmi()
    await fake.start()
    proxy = BlackholeProxy(fake.port)
    await proxy.start()
    client = AmiClient("127.0.0.1", proxy.port, "u", "s", ping_interval=0.5, ping_timeout=0.5,
                       backoff_min=0.05, backoff_max=0.1)
    try:
        assert await client.start(wait=5)
        assert (await next_item(client, AmiLink)).up
        proxy.freeze_all()
        t0 = asyncio.get_running_loop().time()
        assert not (await next_item(client, AmiLink, timeout=10)).up
        assert (await next_item(client, AmiLink, timeout=10)).up
        assert asyncio.get_running_loop().time() - t0 < 5 and fake.logins == 2
    finally:
        await client.stop()
        await proxy.stop()
        await fake.stop()
