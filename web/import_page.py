"""«Настройки → Импорт» (issue #33): a clinic's patients, doctors and appointments from its MIS
export. Upload (streamed to the state folder, never held in memory), the first rows previewed
with a field chosen per column (guessed, then remembered for the next file), a dry run listing
every refused row (downloadable), the import with its progress. Settings admins and the
director only; the file is deleted once imported."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import BodyPartReader, web

from crm import import_files, mis_import
from crm.rules import mis_fields
from pbx.services import SERVICES
from web.common import require_settings, trace

CHUNK = 256 * 1024
STALE_UPLOAD = 24 * 3600.0  # an upload never imported is deleted after a day (patients' data)


def _folder(request: web.Request) -> Path:
    folder = request.app[SERVICES].settings.state_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


async def _page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    db = request.app[SERVICES].db
    return aiohttp_jinja2.render_template("import.html", request, {
        "kinds": mis_fields.KIND_LABELS, "runs": await mis_import.recent_runs(db), "error": error,
        "max_mb": import_files.MAX_BYTES // (1024 * 1024)}, status=status)


async def import_page(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    return await _page(request)


def _sweep(folder: Path, keep: set[str], now: float) -> None:
    for path in folder.iterdir():
        if str(path) not in keep and path.stat().st_mtime < now - STALE_UPLOAD:
            path.unlink(missing_ok=True)


async def _receive(request: web.Request, folder: Path) -> tuple[str, str, Path | None]:
    """The form's kind and file, the file written in chunks with the size checked as it comes
    and each chunk due within the body deadline (a sender that stalls is cut off). Whatever goes
    wrong midway, nothing of the file stays."""
    kind, name, stored = "", "", None
    deadline = request.app[SERVICES].settings.web.body_timeout
    reader = await request.multipart()
    try:
        while (part := await asyncio.wait_for(reader.next(), deadline)) is not None:
            if not isinstance(part, BodyPartReader):
                raise ValueError("nested multipart")
            if part.name == "kind":
                kind = (await asyncio.wait_for(part.read_chunk(64), deadline)).decode("utf-8", "replace")
            elif part.name == "file" and stored is None:
                name = Path(part.filename or "file").name[:200]
                stored = folder / f"{secrets.token_hex(12)}{'.xlsx' if name.lower().endswith('.xlsx') else '.csv'}"
                await _store(part, stored, deadline)
            await part.release()
    except BaseException:  # too large, too slow, malformed, the client gone
        if stored is not None:
            stored.unlink(missing_ok=True)
        raise
    return kind, name, stored


async def _store(part: BodyPartReader, stored: Path, deadline: float) -> None:
    size = 0
    with stored.open("wb") as out:
        while chunk := await asyncio.wait_for(part.read_chunk(CHUNK), deadline):
            size += len(chunk)
            if size > import_files.MAX_BYTES:
                raise import_files.ImportFileError(
                    f"Файл больше {import_files.MAX_BYTES // (1024 * 1024)} МБ: разделите его на части")
            out.write(chunk)


async def import_upload(request: web.Request) -> web.StreamResponse:
    me = await require_settings(request)
    services = request.app[SERVICES]
    folder = _folder(request)
    running = await mis_import.files_in_use(services.db)
    await asyncio.to_thread(_sweep, folder, running, services.clock.now())
    stored = None
    if not request.content_type.startswith("multipart/"):
        return await _page(request, "Выберите файл и отправьте форму", status=400)
    try:
        try:
            kind, name, stored = await _receive(request, folder)
        except TimeoutError:
            raise web.HTTPRequestTimeout(text="Слишком медленная отправка файла") from None
        except import_files.ImportFileError:
            raise
        except ValueError:
            raise import_files.ImportFileError("Форма пришла не полностью: отправьте файл ещё раз") from None
        if kind not in mis_fields.KINDS:
            raise import_files.ImportFileError("Выберите, что в файле: пациенты, врачи или приёмы")
        if stored is None or not name:
            raise import_files.ImportFileError("Выберите файл")
        info, _ = await asyncio.to_thread(import_files.preview, stored)
    except import_files.ImportFileError as exc:
        if stored is not None:
            stored.unlink(missing_ok=True)
        return await _page(request, str(exc), status=400)
    mapping = mis_fields.guess_mapping(kind, info.headers, await mis_import.remembered_mapping(services.db, kind))
    run_id = await mis_import.create_run(services.db, kind, name, str(stored), info.headers, mapping,
                                         info.rows_estimate, me.user_id)
    await trace(request, "import_upload", "import", run_id, f"{mis_fields.KIND_LABELS[kind]}: {name}")
    raise web.HTTPSeeOther(f"/settings/import/{run_id}")


async def _run_or_404(request: web.Request) -> dict[str, Any]:
    run = await mis_import.get_run(request.app[SERVICES].db, int(request.match_info["id"]))
    if run is None:
        raise web.HTTPNotFound(text="Нет такого импорта")
    return run


async def import_run_page(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    return await _run_view(request, await _run_or_404(request))


async def _run_view(request: web.Request, run: dict[str, Any], error: str | None = None,
                    status: int = 200) -> web.Response:
    db = request.app[SERVICES].db
    first: list[list[str]] = []
    kept = await asyncio.to_thread(Path(run["stored_path"]).exists)
    if run["state"] in ("uploaded", "done") and kept:
        try:
            _, first = await asyncio.to_thread(import_files.preview, Path(run["stored_path"]))
        except import_files.ImportFileError as exc:
            error = error or str(exc)
    return aiohttp_jinja2.render_template("import_run.html", request, {
        "run": run, "kind_label": mis_fields.KIND_LABELS.get(run["kind"], run["kind"]),
        "fields": mis_fields.FIELDS.get(run["kind"], ()), "first": first,
        "columns": list(zip(run["headers"], run["mapping"], strict=False)),
        "file_kept": kept,
        "rejections": await mis_import.rejections(db, run["id"], 200), "error": error}, status=status)


async def import_run_submit(request: web.Request) -> web.StreamResponse:
    me = await require_settings(request)
    services = request.app[SERVICES]
    run = await _run_or_404(request)
    form = await request.post()
    dry_run = form.get("action") == "dry_run"
    mapping = [str(form.get(f"col_{i}", ""))[:40] for i in range(len(run["headers"]))]
    problems = mis_fields.mapping_problems(run["kind"], mapping)
    if run["state"] == "running" or (services.imports and services.imports.busy()):
        problems.append("Импорт уже идёт: дождитесь его окончания")
    if not await asyncio.to_thread(Path(run["stored_path"]).exists):
        problems.append("Файл уже удалён: загрузите его снова")
    if problems:
        return await _run_view(request, run | {"mapping": mapping}, "; ".join(problems), status=400)
    if not dry_run:
        await mis_import.remember_mapping(services.db, run["kind"], mis_fields.remembered_from(run["headers"], mapping))
    await mis_import.start_run(services.db, run["id"], mapping, dry_run)
    assert services.imports is not None
    services.imports.start(run["id"])
    await trace(request, "import_dry_run" if dry_run else "import_start", "import", run["id"],
                f"{run['file_name']} ({me.name})")
    raise web.HTTPSeeOther(f"/settings/import/{run['id']}")


async def import_run_status(request: web.Request) -> web.StreamResponse:
    """The progress bar's poll."""
    await require_settings(request)
    run = await _run_or_404(request)
    return web.json_response({k: run[k] for k in ("state", "rows_total", "rows_done", "inserted", "updated",
                                                   "unchanged", "rejected", "message")})


async def import_rejections_csv(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    run = await _run_or_404(request)
    body = import_files.rejections_csv(await mis_import.rejections(request.app[SERVICES].db, run["id"]))
    return web.Response(body=body.encode("utf-8"), content_type="text/csv", charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="import-{run["id"]}-rejected.csv"'})
