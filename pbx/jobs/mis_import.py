"""Running an import from a clinic's MIS export (issue #33): the whole file read once first (a
file broken midway is refused before anything is written), then its rows parsed off the event
loop and written batch by batch, each batch with its progress in one transaction. A stop leaves
the run ``running``; the next start resumes it after its last committed batch. Representatives
who are patients themselves are linked once every patient row is in."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

from crm import import_files, mis_import
from crm.db import Database
from crm.mis_appointments import apply_appointments
from crm.mis_import import BATCH, Counts
from crm.rules import mis_fields
from crm.rules.mis_rows import Rejection, Row, parse_rows

log = logging.getLogger(__name__)
PARSER_PROCESS_ROWS = 20_000  # from this many rows a file is parsed in a process of its own


def _check_readable(path: Path) -> int:
    """Every row of the file decoded once; the count of data rows."""
    _, stream = import_files.rows(path)
    return sum(1 for _ in stream)


def _read_batch(stream: Iterator[tuple[int, list[str]]], size: int) -> list[tuple[int, list[str]]]:
    batch = []
    for item in stream:
        batch.append(item)
        if len(batch) >= size:
            break
    return batch


async def _batches(path: Path, size: int, kind: str, mapping: list[str], today: date,
                   rows: int) -> AsyncIterator[list[Row | list[Rejection]]]:
    """The file's rows parsed batch by batch, one batch ahead: the next is read and parsed while
    this one is written. Parsing (the phone library above all) is most of an import's Python
    work: off the event loop always, and for a big file in a process of its own, so that it runs
    beside the writing instead of taking turns with it for the interpreter's lock."""
    _, stream = await asyncio.to_thread(import_files.rows, path)
    pool = (ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            if rows >= PARSER_PROCESS_ROWS else None)
    loop = asyncio.get_running_loop()

    async def next_batch() -> list[Row | list[Rejection]]:
        chunk = await asyncio.to_thread(_read_batch, stream, size)
        if not chunk:
            return []
        if pool is None:
            return await asyncio.to_thread(parse_rows, kind, mapping, today, chunk)
        return await loop.run_in_executor(pool, parse_rows, kind, mapping, today, chunk)

    ahead = asyncio.ensure_future(next_batch())
    try:
        while parsed := await ahead:
            ahead = asyncio.ensure_future(next_batch())
            yield parsed
    finally:
        ahead.cancel()  # a stop: the batch being parsed is dropped (it is read again on resume)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


async def run_import(db: Database, run_id: int, *, today: date, time_zone: str, resume: bool = False,
                     batch: int = BATCH) -> Counts:
    """The run from its first row (or, resuming, after its last committed batch); returns what
    this pass did. A file that cannot be read ends the run ``failed`` with nothing written."""
    run = await mis_import.get_run(db, run_id)
    if run is None:
        raise ValueError(f"no import run {run_id}")
    path, kind, mapping, dry_run = Path(run["stored_path"]), run["kind"], run["mapping"], bool(run["dry_run"])
    skip = int(run["rows_done"]) if resume else 0
    if not resume:
        await mis_import.start_run(db, run_id, mapping, dry_run)
    total = Counts()
    try:
        rows = await asyncio.to_thread(_check_readable, path)
        adopt = await mis_import.adoptable(db) if kind == "patients" else None
        links: list[tuple[int, str, str]] = []
        accepted: set[str] = set()  # the file's patients (a dry run's representatives are among them)
        done = 0
        async for parsed in _batches(path, batch, kind, mapping, today, rows):
            links += [(p.line, p.values["external_id"], p.values["guardian_external_id"]) for p in parsed
                      if isinstance(p, Row) and p.values.get("guardian_external_id")]
            if kind == "patients" and dry_run:
                accepted.update(p.values["external_id"] for p in parsed if isinstance(p, Row))
            done += len(parsed)
            if done <= skip:
                continue  # committed before the stop
            rows = [p for p in parsed if isinstance(p, Row)]
            refused = [r for p in parsed if isinstance(p, list) for r in p]
            if kind == "patients":
                counts = await mis_import.apply_patients(db, run_id, rows, refused, done, dry_run, adopt)  # type: ignore[arg-type]
            elif kind == "doctors":
                counts = await mis_import.apply_doctors(db, run_id, rows, refused, done, dry_run)
            else:
                counts = await apply_appointments(db, run_id, rows, refused, done, dry_run, time_zone)
            total.add(counts)
        if links:
            late: list[Rejection] = await mis_import.link_guardians(db, links, dry_run, accepted)
            await mis_import.settle(db, run_id, done, late)
            total.rejected += len({r.line for r in late})
    except import_files.ImportFileError as exc:
        await mis_import.finish_run(db, run_id, "failed", str(exc))
        return total
    run = await mis_import.get_run(db, run_id)
    assert run is not None
    await mis_import.finish_run(db, run_id, "done", summary(run))
    return total


async def import_file(db: Database, path: Path, kind: str, *, today: date, time_zone: str,
                      mapping: list[str] | None = None, dry_run: bool = False, batch: int = BATCH) -> dict[str, Any]:
    """A file imported start to end (the CLI, the demo, the bench): a run with the given
    mapping or the one guessed from its headers; returns the finished run."""
    info, _ = await asyncio.to_thread(import_files.preview, path)
    stored = await asyncio.to_thread(path.resolve)
    mapping = mapping or mis_fields.guess_mapping(kind, info.headers)
    run_id = await mis_import.create_run(db, kind, path.name, str(stored), info.headers, mapping,
                                         info.rows_estimate, None)
    await mis_import.start_run(db, run_id, mapping, dry_run)
    await run_import(db, run_id, today=today, time_zone=time_zone, batch=batch)
    run = await mis_import.get_run(db, run_id)
    assert run is not None
    return run


def summary(run: dict[str, object]) -> str:
    verb = "Будет добавлено" if run["dry_run"] else "Добавлено"
    return (f"{verb}: {run['inserted']}, изменено: {run['updated']}, без изменений: {run['unchanged']},"
            f" отклонено строк: {run['rejected']}")


class ImportService:
    """The server's imports: one task per run, resumed after a restart, cancelled at stop (the
    run stays ``running`` and resumes at the next start)."""

    def __init__(self, db: Database, time_zone: str, today: Callable[[], date], uploads: Path | None = None) -> None:
        self._db, self._tz, self._today, self._uploads = db, time_zone, today, uploads
        self._tasks: dict[int, asyncio.Task[Counts]] = {}
        self._resuming: asyncio.Task[None] | None = None

    def busy(self) -> bool:
        return any(not t.done() for t in self._tasks.values()) or (
            self._resuming is not None and not self._resuming.done())

    def start(self, run_id: int, *, resume: bool = False) -> None:
        if self.busy():
            raise ValueError("Другой импорт ещё идёт: дождитесь его окончания")
        task = asyncio.create_task(self._run(run_id, resume), name=f"import-{run_id}")
        self._tasks[run_id] = task

    async def _run(self, run_id: int, resume: bool) -> Counts:
        try:
            counts = await run_import(self._db, run_id, today=self._today(), time_zone=self._tz, resume=resume)
            await self._forget_upload(run_id)
            return counts
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a defect: the run says so instead of hanging at «идёт»
            log.exception("import %s failed", run_id)
            await mis_import.finish_run(self._db, run_id, "failed", f"Ошибка импорта: {type(exc).__name__}")
            return Counts()

    async def _forget_upload(self, run_id: int) -> None:
        """An uploaded file holds patients' data: deleted once imported (a dry run keeps it for the
        import that follows). A file the CLI was given is the user's own and stays."""
        run = await mis_import.get_run(self._db, run_id)
        if run is None or run["dry_run"] or run["state"] != "done" or self._uploads is None:
            return
        path = Path(run["stored_path"])
        if path.parent == self._uploads:
            await asyncio.to_thread(path.unlink, True)

    def resume_interrupted(self) -> None:
        """In the background, one after another: the server starts without waiting for them."""
        self._resuming = asyncio.create_task(self._resume_all(), name="import-resume")

    async def _resume_all(self) -> None:
        for run_id in await mis_import.interrupted_runs(self._db):
            log.warning("resuming import %s after a stop", run_id)
            task = asyncio.create_task(self._run(run_id, True), name=f"import-{run_id}")
            self._tasks[run_id] = task
            await task

    async def wait(self, run_id: int) -> None:
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.shield(task)

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *([self._resuming] if self._resuming else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
