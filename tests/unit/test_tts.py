"""The prompt cache with the real pyttsx3 + espeak-ng + sox: an 8 kHz mono file Asterisk can
play, one render per text even when asked twice at once, and a cancelled render (the server
stopping) leaves neither a running espeak-ng nor a half-written file."""

from __future__ import annotations

import asyncio
import os
import wave
from pathlib import Path

from pbx.outbound.tts import PromptCache


async def test_rendered_once_at_8_khz(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    first, second = await asyncio.gather(cache.path("Здравствуйте"), cache.path("Здравствуйте"))
    assert first == second and first.parent == tmp_path
    with wave.open(str(first.with_suffix(".wav"))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() > 1600  # more than 0.2 s of speech
    assert await cache.ensure("Здравствуйте") is False
    assert os.listdir(tmp_path) == [first.with_suffix(".wav").name]


async def test_a_cancelled_render_leaves_nothing(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    task = asyncio.create_task(cache.path("Проверка отмены синтеза речи. " * 300))
    for _ in range(200):  # cancel while the synthesis child runs (waiting on a state, not a guess)
        probe = await asyncio.create_subprocess_exec("pgrep", "-f", "no complete WAV from espeak",
                                                     stdout=asyncio.subprocess.PIPE)
        if (await probe.communicate())[0].strip():
            break
        await asyncio.sleep(0.02)
    assert not task.done(), "the render ended before it could be cancelled"
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert os.listdir(tmp_path) == []
    workers = await asyncio.create_subprocess_exec("pgrep", "-f", "no complete WAV from espeak",
                                                   stdout=asyncio.subprocess.PIPE)
    out, _ = await workers.communicate()
    assert out.strip() == b""  # no synthesis child left running
