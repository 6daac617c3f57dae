"""Russian prompts: pyttsx3 over espeak-ng (voice ``ru``), converted with sox to 8 kHz mono
16-bit WAV that Asterisk plays, cached by the text's hash in a folder Asterisk can read.

pyttsx3's ``runAndWait()`` returns before libespeak-ng has written the file (lab pitfall), so
the synthesis runs in a child process that waits until the WAV is complete (its header's
length matches the file) before exiting. The child isolates pyttsx3's global engine too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
import tomllib
from pathlib import Path

log = logging.getLogger(__name__)
RATE = 150

WORKER = r"""
import os, sys, time, wave
import pyttsx3
text, out = sys.stdin.read(), sys.argv[1]
engine = pyttsx3.init("espeak")
engine.setProperty("voice", "ru")
engine.setProperty("rate", int(sys.argv[2]))
engine.save_to_file(text, out)
engine.runAndWait()
deadline = time.monotonic() + 60
last = -1
while time.monotonic() < deadline:
    try:
        size = os.path.getsize(out)
        with wave.open(out) as w:
            complete = 44 + w.getnframes() * w.getsampwidth() * w.getnchannels() <= size
    except (OSError, EOFError, wave.Error):
        complete = False
        size = -1
    if complete and size == last and size > 44:
        sys.exit(0)
    last = size
    time.sleep(0.05)
sys.exit("no complete WAV from espeak-ng")
"""


class TtsError(Exception):
    pass


class PromptCache:
    """``await cache.path(text)`` -> the prompt's path without suffix (for ``sound:``)."""

    def __init__(self, folder: Path, rate: int = RATE) -> None:
        self.folder = folder
        self.rate = rate
        self._locks: dict[str, asyncio.Lock] = {}

    def key(self, text: str) -> str:
        return hashlib.sha256(f"{self.rate}|{text}".encode()).hexdigest()[:24]

    async def path(self, text: str) -> Path:
        await self.ensure(text)
        return self.folder / self.key(text)

    async def ensure(self, text: str) -> bool:
        """Render the prompt unless cached; True when it was rendered now."""
        key = self.key(text)
        final = self.folder / f"{key}.wav"
        if final.exists():
            return False
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            rendered = not final.exists()
            if rendered:
                await self._render(text, final)
        self._locks.pop(key, None)
        return rendered

    async def _render(self, text: str, final: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        raw = final.with_name(final.stem + ".raw.wav")
        tmp = final.with_name(final.stem + ".tmp.wav")
        try:
            err = await _run([sys.executable, "-c", WORKER, str(raw), str(self.rate)], text.encode())
            if err is not None:
                raise TtsError(f"espeak-ng via pyttsx3 failed: {err}")
            err = await _run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                              str(tmp)])
            if err is not None:
                raise TtsError(f"sox failed: {err}")
            os.replace(tmp, final)  # atomic: Asterisk never sees half a file
        finally:  # also when cancelled (the server stopping): no half-written file stays
            raw.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)
        log.info("prompt rendered: %s (%d chars)", final.name, len(text))


async def _run(args: list[str], stdin: bytes | None = None) -> str | None:
    """Run a child to its end; None on success, else the tail of its stderr. Cancelled, it
    kills the child rather than leaving it running."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await proc.communicate(stdin)
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    return None if proc.returncode == 0 else err.decode(errors="replace")[-300:]


PHRASES_FILE = Path(__file__).resolve().parents[2] / "sounds" / "prompts.toml"
PHRASE_IDS = ("confirmed", "reschedule", "cancelled", "invalid", "no_input", "goodbye")


def load_phrases(path: Path = PHRASES_FILE) -> dict[str, str]:
    phrases = tomllib.loads(path.read_text(encoding="utf-8")).get("phrases", {})
    missing = [p for p in PHRASE_IDS if not str(phrases.get(p, "")).strip()]
    if missing:
        raise TtsError(f"{path}: phrases missing: {', '.join(missing)}")
    return {p: str(phrases[p]) for p in PHRASE_IDS}


CALLBACK_PHRASE_IDS = ("connecting", "closed")


def load_callback_phrases(path: Path = PHRASES_FILE) -> dict[str, str]:
    """The callback robot's fixed phrases ([callback] of prompts.toml)."""
    phrases = tomllib.loads(path.read_text(encoding="utf-8")).get("callback", {})
    missing = [p for p in CALLBACK_PHRASE_IDS if not str(phrases.get(p, "")).strip()]
    if missing:
        raise TtsError(f"{path}: [callback] phrases missing: {', '.join(missing)}")
    return {p: str(phrases[p]) for p in CALLBACK_PHRASE_IDS}


async def render_phrases(cache: PromptCache, phrases: dict[str, str]) -> dict[str, Path]:
    return {name: await cache.path(text) for name, text in phrases.items()}
