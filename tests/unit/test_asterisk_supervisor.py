"""#31: the embedded Asterisk started again when it dies: at once the first time, backing off
when it keeps dying (a broken configuration must not spin the box), each restart counted with
its reason for health and the home page."""

from __future__ import annotations

import asyncio

from crm.rules.supervision import restart_delay
from pbx.workers.asterisk_supervisor import AsteriskSupervisor


def test_a_crash_is_followed_at_once_a_crash_loop_backs_off() -> None:
    assert restart_delay([], 1000.0) == 1.0
    assert restart_delay([990.0], 1000.0) == 1.0  # three crashes in a row: each at once
    assert restart_delay([980.0, 990.0], 1000.0) == 1.0
    assert restart_delay([900.0, 950.0, 990.0], 1000.0) == 2.0  # a fourth: the loop backs off
    assert restart_delay([900.0, 920.0, 950.0, 990.0], 1000.0) == 4.0
    assert restart_delay([float(t) for t in range(20)], 100.0) == 60.0  # at most a minute
    assert restart_delay([100.0], 100.0 + 601) == 1.0  # ten quiet minutes: at once again


class FakeAsterisk:
    def __init__(self) -> None:
        self.alive, self.starts = True, 0

    @property
    def running(self) -> bool:
        return self.alive

    def last_words(self) -> str:
        return "убит сигналом 9"

    def start(self) -> int:
        self.starts += 1
        self.alive = True
        return 4242


async def test_a_dead_asterisk_is_started_again_and_counted(monkeypatch) -> None:
    import crm.rules.supervision as supervision

    monkeypatch.setattr(supervision, "FIRST", 0.01)
    ast = FakeAsterisk()
    sup = AsteriskSupervisor(ast, check=0.01)  # type: ignore[arg-type]
    sup.start()
    try:
        await asyncio.sleep(0.05)
        assert ast.starts == 0  # alive: left alone
        ast.alive = False
        for _ in range(200):
            if ast.starts:
                break
            await asyncio.sleep(0.01)
        assert ast.starts == 1 and ast.alive
        state = sup.state(sup.restarts[-1] + 1)
        assert state["restarts"] == state["restarts_24h"] == 1 and state["last_reason"] == "убит сигналом 9"
    finally:
        await sup.stop()
