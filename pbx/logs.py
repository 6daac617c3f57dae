"""The server's logs: one line per event, as text or as JSON (``log_format = "json"``), to stderr
(the journal under systemd) or to a rotated file (``log_file``); phone numbers are masked in
every line, so a log shipped for support carries no patient's number. Secrets never reach a log
line (settings keep them out of ``repr``)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
from datetime import UTC, datetime
from pathlib import Path

# a run of 10+ digits (with the separators people write) is a phone number: keep its last two;
# a date (2026-12-02 ...) is not
HANDLER_NAME = "clinic-pbx"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PHONE = re.compile(r"(?<![\w.])(\+?\d[\d\- ()]{5,}\d)(?![\w.])")


def mask_phones(text: str) -> str:
    def mask(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(1))
        if len(digits) < 10 or _DATE.match(m.group(1)):
            return m.group(1)
        return ("+" if m.group(1).startswith("+") else "") + "*" * (len(digits) - 2) + digits[-2:]

    return _PHONE.sub(mask, text)


class MaskPhones(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_phones(record.getMessage())
        record.args = None
        return True


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            line["exc"] = mask_phones(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def setup_logging(level: int, fmt: str = "text", file: str = "", max_mb: int = 50, keep: int = 5) -> None:
    handler: logging.Handler
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(file, maxBytes=max_mb * 1024 * 1024, backupCount=keep,
                                                       encoding="utf-8")
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskPhones())
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:  # ours from before only
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
