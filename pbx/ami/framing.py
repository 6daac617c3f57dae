"""AMI wire framing on bytes: split on the blank line, then decode each whole message.

panoramisk 1.4 decodes every TCP chunk on its own with errors ignored, so a Cyrillic caller
name whose two UTF-8 bytes straddle two reads loses a character. Here bytes are buffered until a
message is complete (``\\r\\n\\r\\n``) and only then decoded, so a split anywhere is harmless.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EOM = b"\r\n\r\n"
BANNER_PREFIX = b"Asterisk Call Manager/"
# A message larger than this is not AMI; drop the buffer rather than grow without bound.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

Headers = dict[str, "str | list[str]"]


@dataclass(slots=True)
class AmiMessage:
    """One AMI message. Repeated keys (ChanVariable, Output) become lists, as in panoramisk."""

    headers: Headers
    malformed_lines: int = 0  # lines without "Key: value"
    undecodable: bool = False  # bytes that were not UTF-8 were replaced

    @property
    def event(self) -> str | None:
        value = self.headers.get("Event")
        return value if isinstance(value, str) else None

    @property
    def response(self) -> str | None:
        value = self.headers.get("Response")
        return value if isinstance(value, str) else None


def parse_message(raw: bytes) -> AmiMessage:
    """Parse one message body (without the terminating blank line)."""
    try:
        text = raw.decode("utf-8")
        undecodable = False
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
        undecodable = True
    # Fast path: every line is "Key: value" and no key repeats (nearly all events).
    pairs = [line.split(": ", 1) for line in text.split("\r\n") if line]
    try:
        fast: Headers = dict(pairs)  # type: ignore[arg-type]
    except ValueError:  # a line without ": "
        fast = {}
    if fast and len(fast) == len(pairs):
        return AmiMessage(fast, 0, undecodable)
    headers: Headers = {}
    malformed = 0
    for line in text.split("\r\n"):
        if not line:
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            # "Key:" with an empty value is legal; anything else without a colon is not.
            if line.endswith(":"):
                key, value = line[:-1], ""
            else:
                malformed += 1
                continue
        old = headers.get(key)
        if old is None:
            headers[key] = value
        elif isinstance(old, list):
            old.append(value)
        else:
            headers[key] = [old, value]
    return AmiMessage(headers, malformed, undecodable)


@dataclass(slots=True)
class AmiFramer:
    """Incremental framer: ``feed(bytes) -> [AmiMessage]``, order preserved."""

    banner: str | None = None
    dropped_bytes: int = 0
    _rest: bytes = field(default=b"", repr=False)

    def feed(self, data: bytes) -> list[AmiMessage]:
        buf = self._rest + data if self._rest else data
        if self.banner is None:
            # The greeting is one line ending in a single CRLF, not a blank line.
            if len(buf) < len(BANNER_PREFIX) and BANNER_PREFIX.startswith(buf):
                self._rest = buf
                return []
            if buf.startswith(BANNER_PREFIX):
                end = buf.find(b"\r\n")
                if end < 0:
                    self._rest = buf
                    return []
                self.banner = buf[:end].decode("utf-8", "replace")
                buf = buf[end + 2 :]
            else:
                self.banner = ""
        parts = buf.split(EOM)
        rest = parts.pop()
        if len(rest) > MAX_MESSAGE_BYTES:
            self.dropped_bytes += len(rest)
            rest = b""
        self._rest = rest
        return [parse_message(p) for p in parts if p.strip(b"\r\n")]

    @property
    def buffered(self) -> int:
        return len(self._rest)
