"""Recordings that do not fill the disk: a finished call's WAV (8 kHz, 16 kB/s) is re-encoded as
Ogg Vorbis with sox (about a tenth of the size; browsers play it) once the call has ended, and a
recording older than ``recordings_keep_days`` is deleted (the clinic decides how long it keeps
them; 0 keeps them for ever). A pass every few minutes; the CRM's record follows each file in one
write. Also the figures the home page shows: how many, how much, the oldest."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from crm import calls
from crm.aio import cancel_and_wait
from crm.calls import iso
from crm.db import Database
from pbx.settings import Settings

log = logging.getLogger(__name__)
PASS_SECONDS = 300.0
SETTLE = 60.0  # seconds after the call's end before its file is touched (MixMonitor has closed it)


@dataclass(frozen=True)
class Usage:
    files: int
    bytes: int
    oldest: float | None  # mtime of the oldest file


def usage(folder: Path) -> Usage:
    files, size, oldest = 0, 0, None
    if folder.is_dir():
        for entry in os.scandir(folder):
            if entry.is_file() and entry.name.endswith((".wav", ".ogg")):
                st = entry.stat()
                files, size = files + 1, size + st.st_size
                oldest = st.st_mtime if oldest is None else min(oldest, st.st_mtime)
    return Usage(files, size, oldest)


async def encode(src: Path, dst: Path) -> str:
    """"" when ``dst`` was written (atomically), else why not."""
    part = dst.with_name(dst.name + ".part")
    proc = await asyncio.create_subprocess_exec(
        "sox", str(src), "-t", "ogg", "-C", "0", str(part),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        part.unlink(missing_ok=True)
        raise
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        return err.decode(errors="replace").strip()[:200] or f"sox exited {proc.returncode}"
    os.chmod(part, 0o600)
    os.replace(part, dst)
    return ""


class RecordingKeeper:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.folder = settings.recordings_dir
        self.compress = settings.recordings_format == "ogg"
        self.keep_days = settings.recordings_keep_days
        self.failed: set[int] = set()  # calls whose file sox refused: left as WAV, not retried
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="recordings")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            # the first pass a few minutes after the start too: a restart is no time for sox
            await asyncio.sleep(PASS_SECONDS)
            try:
                await self.pass_once(time.time())
            except Exception:
                log.exception("recordings pass failed")

    async def pass_once(self, now: float) -> tuple[int, int]:
        """Returns (compressed, deleted)."""
        compressed = deleted = 0
        if self.compress:
            for row in await calls.recordings_to_compress(self.db, iso(now - SETTLE) or "", 100):
                if row["id"] in self.failed:
                    continue
                src = self.folder / row["recording"]
                if not src.is_file():  # nothing was recorded (never bridged) or it is gone
                    await calls.set_recording(self.db, row["id"], row["recording"], "")
                    continue
                dst = src.with_suffix(".ogg")
                error = await encode(src, dst)
                if error:
                    log.warning("recording of call %s kept as WAV: %s", row["id"], error)
                    self.failed.add(row["id"])
                    continue
                if await calls.set_recording(self.db, row["id"], row["recording"], dst.name):
                    src.unlink(missing_ok=True)
                    compressed += 1
                else:  # the record changed meanwhile: keep the WAV it names
                    dst.unlink(missing_ok=True)
        if self.keep_days > 0:
            for row in await calls.recordings_older_than(self.db, iso(now - self.keep_days * 86400) or "", 500):
                if await calls.set_recording(self.db, row["id"], row["recording"], ""):
                    (self.folder / row["recording"]).unlink(missing_ok=True)
                    deleted += 1
        if compressed or deleted:
            log.info("recordings: %d compressed, %d deleted (kept %d days)", compressed, deleted, self.keep_days)
        return compressed, deleted
