"""Logs: phone numbers masked in every line (text and JSON), JSON lines parse, a log file
rotates."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pbx.logs import JsonLines, MaskPhones, mask_phones, setup_logging


@pytest.mark.parametrize(("text", "shown"), [
    ("robot: originate to Local/79990000001@patient-sim refused", "robot: originate to Local/*********01@patient-sim refused"),
    ("call from +7 (916) 123-45-67 ended", "call from +*********67 ended"),
    ("caller 89161234567, 2 legs", "caller *********67, 2 legs"),
    ("job 42 attempt 3 at 10:30, port 5060", "job 42 attempt 3 at 10:30, port 5060"),
    ("linkedid 1796195341.945071", "linkedid 1796195341.945071"),
    ("write-off of 2026-12-02 07:36 done", "write-off of 2026-12-02 07:36 done"),
    ("internal 101 to 102", "internal 101 to 102"),
])
def test_phone_numbers_are_masked_and_the_rest_is_kept(text: str, shown: str) -> None:
    assert mask_phones(text) == shown


def test_json_lines_with_masked_arguments(tmp_path: Path) -> None:
    record = logging.LogRecord("pbx.x", logging.WARNING, __file__, 1, "call from %s: %d s", ("+79161234567", 12), None)
    MaskPhones().filter(record)
    line = json.loads(JsonLines().format(record))
    assert line["msg"] == "call from +*********67: 12 s" and line["level"] == "WARNING" and line["logger"] == "pbx.x"


def test_a_log_file_rotates(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "clinic-pbx.log"
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        setup_logging(logging.INFO, "json", str(path), max_mb=1, keep=2)
        log = logging.getLogger("pbx.test")
        for i in range(6000):
            log.info("line %d for +79161234567 %s", i, "x" * 300)
        for h in root.handlers:
            h.flush()
        files = sorted(p.name for p in path.parent.iterdir())
        assert files == ["clinic-pbx.log", "clinic-pbx.log.1", "clinic-pbx.log.2"]
        last = path.read_text(encoding="utf-8").splitlines()[-1]
        assert json.loads(last)["msg"].startswith("line 5999 for +*********67")
        assert "79161234567" not in path.read_text(encoding="utf-8")
    finally:
        for h in [h for h in root.handlers if h not in saved[0]]:
            root.removeHandler(h)
            h.close()
        root.setLevel(saved[1])
