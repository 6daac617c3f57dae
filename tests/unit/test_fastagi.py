"""FastAGI server against clients that misbehave the way real peers do."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agi.routes import incoming_route
from agi.server import AgiHangup, AgiRequest, FastAgiServer
from crm import patients
from crm.db import Database

ENV = "agi_network: yes\nagi_network_script: {script}\nagi_channel: PJSIP/operator-1\nagi_callerid: {cid}\n\n"


async def serve(**routes) -> FastAgiServer:
    server = FastAgiServer("127.0.0.1", 0, handler_timeout=2.0)
    for path, fn in routes.items():
        server.add_route(path, fn)
    await server.start()
    assert server.server is not None
    server.port = server.server.sockets[0].getsockname()[1]
    return server


async def talk(port: int, env: str, replies: list[str] | None = None) -> list[str]:
    """Act as Asterisk: send the environment, answer each command, return the commands."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(env.encode())
    commands = []
    for reply in replies or []:
        line = await asyncio.wait_for(reader.readline(), 2)
        if not line:
            break
        commands.append(line.decode().rstrip("\n"))
        writer.write(reply.encode())
    rest = await asyncio.wait_for(reader.read(), 2)
    commands.extend(x for x in rest.decode().split("\n") if x)
    writer.close()
    return commands


async def max_lag(work, ticks: int = 20, period: float = 0.01) -> float:
    """Run ``work`` beside a ticker; the longest the loop let a 10 ms tick wait beyond its time
    (a blocked loop delays every tick; a spinning one would never let the work finish)."""
    loop = asyncio.get_running_loop()
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        for _ in range(ticks):
            due = loop.time() + period
            await asyncio.sleep(period)
            worst = max(worst, loop.time() - due)

    await asyncio.wait_for(asyncio.gather(ticker(), work), 10)
    return worst


async def test_the_lag_probe_sees_a_blocked_loop() -> None:
    async def blocking() -> None:
        await asyncio.sleep(0.02)
        time.sleep(0.4)  # noqa: ASYNC251 - on purpose: what a spinning reader or a sync handler does

    assert await max_lag(blocking()) >= 0.3


async def test_peer_closing_mid_header_is_dropped_and_loop_keeps_serving() -> None:
    seen = []

    async def ok(request: AgiRequest) -> None:
        seen.append(request.headers["agi_callerid"])

    server = await serve(ok=ok)
    for partial in (b"", b"agi_network: yes\n", b"agi_network: yes\nagi_netw"):
        _, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.write(partial)
        await w.drain()
        w.close()
    lag = await max_lag(talk(server.port, ENV.format(script="ok", cid="100")))
    assert lag < 0.25, f"the event loop was blocked for {lag:.2f} s"
    assert seen == ["100"]
    await asyncio.sleep(0.05)
    assert server.stats["dropped"] == 3
    await server.stop()


async def test_hangup_line_and_511_end_the_handler_cleanly() -> None:
    outcome = []

    async def route(request: AgiRequest) -> None:
        try:
            await request.send_command("STREAM FILE beep \"\"")
            await request.send_command("SET VARIABLE X 1")
        except AgiHangup as exc:
            outcome.append((request.hung_up, str(exc)))
            raise

    server = await serve(r=route)
    cmds = await talk(
        server.port,
        ENV.format(script="r", cid="1"),
        ["HANGUP\n200 result=0 endpos=0\n", "511 Command Not Permitted on a dead channel\n"],
    )
    assert cmds[0].startswith("STREAM FILE") and cmds[1] == "SET VARIABLE X 1"
    assert outcome == [(True, "511 Command Not Permitted on a dead channel")]
    assert server.stats["hangups"] == 1
    await server.stop()


async def test_eof_during_a_command_is_a_hangup_not_a_spin() -> None:
    async def route(request: AgiRequest) -> None:
        await request.send_command("ANSWER")

    server = await serve(r=route)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(ENV.format(script="r", cid="1").encode())
    await reader.readline()
    writer.close()
    for _ in range(50):
        if server.stats["hangups"]:
            break
        await asyncio.sleep(0.02)
    assert server.stats["hangups"] == 1
    await server.stop()


async def test_a_failing_handler_sends_the_safe_default() -> None:
    async def broken(request: AgiRequest) -> None:
        raise RuntimeError("database on fire")

    server = await serve(broken=broken)
    cmds = await talk(server.port, ENV.format(script="broken", cid="1"), ["200 result=1\n"])
    assert cmds == ['SET VARIABLE CLINIC_AGI_STATUS "FAILED"']
    assert server.stats["failed"] == 1
    cmds = await talk(server.port, ENV.format(script="nosuchroute", cid="1"), ["200 result=1\n"])
    assert cmds == ['SET VARIABLE CLINIC_AGI_STATUS "FAILED"']
    await server.stop()


async def test_hostile_values_cannot_break_mset(tmp_path: Path) -> None:
    async def route(request: AgiRequest) -> None:
        await request.set_variables({"CALLERID(name)": 'Ив"ан, \\ "x=1\nSET VARIABLE Y'})

    server = await serve(r=route)
    cmds = await talk(server.port, ENV.format(script="r", cid="1"), ["200 result=0\n"])
    assert cmds == ['EXEC MSet "CALLERID(name)=Ив ан     x=1 SET VARIABLE Y"']
    await server.stop()


async def test_sync_routes_are_refused() -> None:
    server = FastAgiServer("127.0.0.1", 0)
    with pytest.raises(TypeError):
        server.add_route("sync", lambda request: None)


async def test_incoming_route_names_the_patient(tmp_path: Path) -> None:
    db = Database(tmp_path / "crm.sqlite")
    await db.open()
    await patients.add_patient(db, "Петрова", "Анна", "Сергеевна", phone_numbers=("+79161234567",))
    await patients.add_patient(db, "Смирнова", "Мария", phone_numbers=("89265554433",))
    await patients.add_patient(db, "Смирнов", "Олег", phone_numbers=("+7 926 555-44-33",))
    server = await serve(incoming=incoming_route(db))
    ok = ["200 result=0\n"]
    cmds = await talk(server.port, ENV.format(script="incoming", cid="79161234567"), ok)
    assert cmds == ['EXEC MSet "CLINIC_CALLER_E164=+79161234567,CLINIC_CALLER_TYPE=patient,'
                    'CLINIC_PATIENT_ID=1,CALLERID(name)=Петрова Анна Сергеевна,CLINIC_AGI_STATUS=OK"']
    cmds = await talk(server.port, ENV.format(script="incoming", cid="+79265554433"), ok)
    assert "CALLERID(name)=Пациенты: 2," in cmds[0] and "CLINIC_CALLER_TYPE=patients" in cmds[0]
    cmds = await talk(server.port, ENV.format(script="incoming", cid="unknown"), ok)
    assert "CLINIC_CALLER_TYPE=unknown" in cmds[0] and "CALLERID" not in cmds[0]
    await server.stop()
    await db.close()


async def test_oversized_environment_is_dropped() -> None:
    async def ok(request: AgiRequest) -> None:
        raise AssertionError("must not run")

    server = await serve(ok=ok)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network_script: ok\n" + b"agi_junk: " + b"x" * 100_000 + b"\n\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without a command
    writer.close()
    assert server.stats["dropped"] == 1
    await server.stop()
