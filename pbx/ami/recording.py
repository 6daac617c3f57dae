"""Raw AMI recordings: the exact bytes of every TCP read, with its receive time.

Binary-safe and split-preserving, so a replay feeds the framer the very chunks Asterisk sent
(including a multi-byte character cut between two reads). File layout: the magic line, then
records of ``<float64 time><uint32 length><bytes>`` (little-endian).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

MAGIC = b"CLINIC-PBX-AMI-RAW 1\n"
_HEAD = struct.Struct("<dI")


class RawRecorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        # unbuffered: a recording is complete on disk at every moment (tests copy it live)
        self._fh: BinaryIO = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        self._fh.write(MAGIC)
        self.chunks = 0
        self.bytes = 0

    def __call__(self, data: bytes, at: float) -> None:
        self._fh.write(_HEAD.pack(at, len(data)))
        self._fh.write(data)
        self.chunks += 1
        self.bytes += len(data)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_recording(path: Path) -> Iterator[tuple[float, bytes]]:
    with open(path, "rb") as fh:
        if fh.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{path} is not a clinic-pbx raw AMI recording")
        while True:
            head = fh.read(_HEAD.size)
            if not head:
                return
            if len(head) < _HEAD.size:
                raise ValueError(f"{path}: truncated record header")
            at, size = _HEAD.unpack(head)
            data = fh.read(size)
            if len(data) < size:
                raise ValueError(f"{path}: truncated record")
            yield at, data
