"""Music on hold (issue #37: a desk phone's hold key): the patient on hold hears a soft, slow
arpeggio instead of silence. Debian's music packs are not installed (they are large and
recommended only), so the box makes its own file once, 8 kHz 16-bit mono, from plain sine tones."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

RATE = 8000
NOTES = (261.63, 329.63, 392.00, 523.25, 392.00, 329.63, 293.66, 349.23, 440.00, 349.23)  # C-E-G-C, D-F-A


def _note(freq: float, seconds: float) -> bytes:
    n = int(RATE * seconds)
    out = bytearray()
    for i in range(n):
        envelope = min(1.0, i / 400) * min(1.0, (n - i) / 1600)  # no clicks between notes
        sample = 0.22 * envelope * (math.sin(2 * math.pi * freq * i / RATE) + 0.3 * math.sin(4 * math.pi * freq * i / RATE))
        out += struct.pack("<h", int(sample * 32767 / 1.3))
    return bytes(out)


def write_hold_music(folder: Path) -> Path:
    """``folder/clinic-hold.wav``, made once (about 20 s, looped by Asterisk)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clinic-hold.wav"
    if not path.exists():
        frames = b"".join(_note(f, 0.9) for _ in range(2) for f in NOTES)
        tmp = path.with_suffix(".tmp")
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(frames)
        tmp.replace(path)
    return path
