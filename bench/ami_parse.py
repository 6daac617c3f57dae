"""AMI events/s through our framing + parsing vs panoramisk 1.4's own parser, same run.

Input: the raw AMI recordings in tests/fixtures/ami (real Asterisk traffic captured by
``clinic-pbx record-ami`` / the integration tests), repeated to a large stream and re-cut into
reads of a fixed size, as a TCP socket would deliver them. Both parsers see the same bytes.

    .venv/bin/python bench/ami_parse.py [--events 200000] [--read-size 4096]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from panoramisk.ami_protocol import AMIProtocol

from pbx.ami.client import ClinicManager, FramedAMIProtocol
from pbx.ami.framing import AmiFramer
from pbx.ami.recording import read_recording

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ami"


def load_stream(target_events: int) -> tuple[bytes, int]:
    body = b""
    for path in sorted(FIXTURES.glob("*.amiraw")):
        data = b"".join(chunk for _, chunk in read_recording(path))
        body += data.split(b"\r\n", 1)[1]  # drop the greeting line
    per_copy = body.count(b"\r\n\r\n")
    copies = max(1, target_events // per_copy)
    return b"Asterisk Call Manager/11.0.0\r\n" + body * copies, per_copy * copies


def chunks(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


class CountingFactory:
    """Stands in for the manager: counts what the protocol hands over."""

    def __init__(self) -> None:
        self.count = 0
        self.raw_sink = None

    def dispatch(self, message: object) -> None:  # panoramisk's path
        self.count += 1

    def on_ami_event(self, event: object) -> None:  # our path
        self.count += 1


def run_panoramisk(reads: list[bytes]) -> tuple[float, int]:
    proto = AMIProtocol()
    proto.connection_made(None)
    factory = CountingFactory()
    proto.factory = factory
    proto.encoding = "utf8"
    t0 = time.perf_counter()
    for r in reads:
        proto.data_received(r)
    return time.perf_counter() - t0, factory.count


def run_ours_protocol(reads: list[bytes]) -> tuple[float, int]:
    proto = FramedAMIProtocol()
    proto.connection_made(None)
    factory = CountingFactory()
    proto.factory = factory  # type: ignore[assignment]
    t0 = time.perf_counter()
    for r in reads:
        proto.data_received(r)
    return time.perf_counter() - t0, factory.count


def run_ours_framer(reads: list[bytes]) -> tuple[float, int]:
    framer = AmiFramer()
    n = 0
    t0 = time.perf_counter()
    for r in reads:
        n += len(framer.feed(r))
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--read-size", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    assert ClinicManager  # the protocol is used by this manager in production
    stream, n_events = load_stream(args.events)
    reads = chunks(stream, args.read_size)
    print(f"stream: {len(stream) / 1e6:.1f} MB, {n_events} messages, {len(reads)} reads of {args.read_size} B")
    results: dict[str, float] = {}
    for name, fn in (
        ("panoramisk 1.4 AMIProtocol", run_panoramisk),
        ("clinic-pbx FramedAMIProtocol", run_ours_protocol),
        ("clinic-pbx AmiFramer alone", run_ours_framer),
    ):
        best = min(fn(reads)[0] for _ in range(args.rounds))
        count = fn(reads)[1]
        results[name] = n_events / best
        print(f"{name:32s} {n_events / best:12,.0f} msg/s  (best of {args.rounds}; {count} delivered)")
    base = results["panoramisk 1.4 AMIProtocol"]
    for name, rate in results.items():
        print(f"ratio {name:26s} {rate / base:5.2f}x panoramisk")


if __name__ == "__main__":
    main()
