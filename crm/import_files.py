"""Reading a clinic's MIS export as rows of text, streamed: CSV in any common delimiter and in
UTF-8 or Windows-1251 (detected), or XLSX through openpyxl's read-only mode. A file that is not
one of those, too large, or broken midway is an ``ImportFileError`` in the import page's words
(issue #33)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

MAX_BYTES = 100 * 1024 * 1024  # a 100,000-patient export is about 15 MB
MAX_UNPACKED = 1024 * 1024 * 1024  # an XLSX that unpacks beyond this is refused (zip bomb)
_SAMPLE = 64 * 1024
_DELIMITERS = ";,\t|"


class ImportFileError(ValueError):
    """The file cannot be read; the message is for the user."""


@dataclass(frozen=True)
class TableInfo:
    kind: str  # csv | xlsx
    encoding: str
    delimiter: str
    headers: list[str]
    rows_estimate: int


def _file_type(path: Path) -> str:
    size = path.stat().st_size
    if size == 0:
        raise ImportFileError("Файл пустой")
    if size > MAX_BYTES:
        raise ImportFileError(f"Файл больше {MAX_BYTES // (1024 * 1024)} МБ: разделите его на части")
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ImportFileError("Старый формат Excel (XLS): сохраните файл как XLSX или CSV")
    if b"\x00" in head or head.startswith((b"%PDF", b"\x89PNG", b"\x1f\x8b")):
        raise ImportFileError("Это не таблица: загрузите файл CSV или XLSX")
    return "csv"


def _encoding(sample: bytes) -> str:
    if sample.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 3:  # a character cut by the sample's end
            return "utf-8"
    return "cp1251"


def _delimiter(text: str) -> str:
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        first = lines[0] if lines else ""
        return max(_DELIMITERS, key=first.count)


def _csv_rows(path: Path, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    with path.open("r", encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            for cells in reader:
                if any(c.strip() for c in cells):
                    yield reader.line_num, cells
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"Файл повреждён: неверная кодировка после строки {reader.line_num}") from exc
        except csv.Error as exc:
            raise ImportFileError(f"Файл повреждён в строке {reader.line_num}: {exc}") from exc


def _cell_text(value: Any) -> str:
    """An XLSX cell as its text: dates as ISO, whole numbers without ``.0`` (phones, ids)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M") if value.time() != time(0, 0) else value.strftime("%Y-%m-%d")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _open_xlsx(path: Path) -> Any:
    import openpyxl  # imported here: only an XLSX needs it

    try:
        with zipfile.ZipFile(path) as z:
            if sum(i.file_size for i in z.infolist()) > MAX_UNPACKED:
                raise ImportFileError("Файл XLSX слишком велик в распакованном виде")
        return openpyxl.load_workbook(path, read_only=True, data_only=False)
    except ImportFileError:
        raise
    except Exception as exc:  # openpyxl raises many kinds for a broken file
        raise ImportFileError("Файл XLSX повреждён или это не таблица Excel") from exc


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    book = _open_xlsx(path)
    try:
        for number, values in enumerate(book.active.iter_rows(values_only=True), start=1):
            cells = [_cell_text(v) for v in values]
            if any(c.strip() for c in cells):
                yield number, cells
    except ImportFileError:
        raise
    except Exception as exc:
        raise ImportFileError("Файл XLSX повреждён") from exc
    finally:
        book.close()


def rows(path: Path) -> tuple[TableInfo, Iterator[tuple[int, list[str]]]]:
    """The file's shape and its data rows (line number as the file counts it, cells as text);
    the header is the first non-empty row."""
    kind = _file_type(path)
    if kind == "xlsx":
        book = _open_xlsx(path)
        estimate = int(book.active.max_row or 0)
        book.close()
        encoding, delimiter, stream = "", "", _xlsx_rows(path)
    else:
        with path.open("rb") as f:
            sample = f.read(_SAMPLE)
        encoding = _encoding(sample)
        text = sample.decode(encoding, errors="ignore")
        delimiter = _delimiter(text)
        estimate = _count_lines(path)
        stream = _csv_rows(path, encoding, delimiter)
    first = next(stream, None)
    if first is None:
        raise ImportFileError("В файле нет строк")
    headers = [h.strip() for h in first[1]]
    return TableInfo(kind, encoding, delimiter, headers, max(0, estimate - 1)), stream


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            count += chunk.count(b"\n")
    return count


def preview(path: Path, limit: int = 5) -> tuple[TableInfo, list[list[str]]]:
    info, stream = rows(path)
    first = []
    for _, cells in stream:
        first.append(cells)
        if len(first) >= limit:
            break
    stream.close()  # type: ignore[attr-defined]
    return info, first


def rejections_csv(rejections: list[tuple[int, str, str]]) -> str:
    """The dry run's refused rows as a CSV the clinic opens in Excel (UTF-8 with BOM, ``;``)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";")
    writer.writerow(["Строка", "Столбец", "Причина"])
    for line, column, reason in rejections:
        writer.writerow([line, _safe(column), _safe(reason)])
    return out.getvalue()


def _safe(text: str) -> str:
    """A text cell that Excel would run as a formula is quoted."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
