"""Call tracker throughput and memory on real traffic scaled to a big day.

The raw AMI recordings in tests/fixtures/ami (one per call scenario, real Asterisk 22 traffic)
are parsed once; their calls are then replayed N times with fresh uniqueids/linkedids and
shifted times, ``--concurrent`` calls interleaved at any moment, as a clinic's busy day would.
Printed: events/s through normalize + tracker, and through framing + normalize + tracker
(the whole pure pipeline from bytes), records produced, and peak memory of the tracker.

    .venv/bin/python bench/tracker.py [--calls 100000] [--concurrent 20]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from crm.rules.call_records import Anomaly, CallFinished
from pbx.ami.framing import AmiFramer
from pbx.ami.recording import read_recording
from pbx.calls.events import normalize
from pbx.calls.tracker import CallTracker

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ami"
ID_KEYS = ("Uniqueid", "Linkedid", "DestUniqueid", "DestLinkedid")
BRIDGE_KEYS = ("BridgeUniqueid", "BridgeId")


def scenario_calls() -> list[list[dict[str, object]]]:
    """Each fixture's events (header dicts), grouped per call by Linkedid, in order; linkedids
    whose channels meet (a pickup: the picker's own call joins the patient's) are one call."""
    calls: list[list[dict[str, object]]] = []
    for path in sorted(FIXTURES.glob("*.amiraw")):
        framer = AmiFramer()
        group_of: dict[str, int] = {}  # linkedid or uniqueid -> group
        groups: dict[int, list[dict[str, object]]] = {}
        for _, chunk in read_recording(path):
            for msg in framer.feed(chunk):
                lid, uid = msg.headers.get("Linkedid"), msg.headers.get("Uniqueid")
                if not (msg.event and isinstance(lid, str) and lid):
                    continue
                known = {group_of[k] for k in (lid, uid) if isinstance(k, str) and k in group_of}
                g = min(known) if known else len(groups) + len(group_of) + 1
                events = groups.setdefault(g, [])
                for other in sorted(known - {g}):  # two calls met: one from now on, in order
                    events.extend(groups.pop(other))
                    group_of.update({k: g for k, v in group_of.items() if v == other})
                    events.sort(key=lambda h: float(str(h.get("Timestamp") or 0)))
                events.append(msg.headers)
                group_of[lid] = g
                if isinstance(uid, str) and uid:
                    group_of[uid] = g
        calls.extend(groups.values())
    return calls


def renumber(events: list[dict[str, object]], n: int, t_shift: float) -> list[dict[str, object]]:
    """A copy of one call's events as call number ``n``: new ids, times moved by t_shift."""
    out = []
    for h in events:
        h2 = dict(h)
        for key in ID_KEYS:
            v = h2.get(key)
            if isinstance(v, str) and "." in v:
                h2[key] = f"{n}.{v.rsplit('.', 1)[1]}"
        for key in BRIDGE_KEYS:
            v = h2.get(key)
            if isinstance(v, str) and v:
                h2[key] = f"{n}-{v}"
        ts = h2.get("Timestamp")
        if isinstance(ts, str):
            try:
                h2["Timestamp"] = f"{float(ts) + t_shift:.6f}"
            except ValueError:
                pass
        out.append(h2)
    return out


def day_stream(templates, total: int, concurrent: int, seed: int = 7) -> Iterator[dict[str, object]]:
    """``total`` calls, ``concurrent`` at a time, their events interleaved event by event."""
    rnd = random.Random(seed)
    active: list[list[dict[str, object]]] = []
    started = 0
    while started < total or active:
        while len(active) < concurrent and started < total:
            tpl = templates[rnd.randrange(len(templates))]
            active.append(renumber(tpl, 1_000_000 + started, started * 3.0))
            started += 1
        i = rnd.randrange(len(active))
        call = active[i]
        yield call.pop(0)
        if not call:
            active.pop(i)


def to_wire(h: dict[str, object]) -> bytes:
    lines = []
    for k, v in h.items():
        for item in v if isinstance(v, list) else [v]:
            lines.append(f"{k}: {item}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--concurrent", type=int, default=20)
    args = ap.parse_args()
    templates = scenario_calls()
    per_call = sum(len(t) for t in templates) / len(templates)
    print(f"{len(templates)} recorded calls, {per_call:.0f} AMI events per call on average")
    t0 = time.perf_counter()
    stream = list(day_stream(templates, args.calls, args.concurrent))
    print(f"built {len(stream):,} events for {args.calls:,} calls in {time.perf_counter() - t0:.1f} s")

    tracker = CallTracker()
    records = anomalies = 0
    t0 = time.perf_counter()
    for h in stream:
        e = normalize(str(h["Event"]), h, 0.0)
        if e is None:
            continue
        for change in tracker.feed(e):
            if isinstance(change, CallFinished):
                records += 1
            elif isinstance(change, Anomaly):
                anomalies += 1
    dt = time.perf_counter() - t0
    print(f"normalize + tracker: {len(stream) / dt:,.0f} events/s ({dt:.1f} s for the day)")
    print(f"  records {records:,} (calls that reach a desk phone or the trunk), anomalies "
          f"{anomalies}, still open at the end {tracker.active}")

    # memory: what the tracker holds while the day runs (open calls + recent linkedids)
    gc.collect()
    tracemalloc.start()
    tracker = CallTracker()
    for h in stream[: min(len(stream), 1_500_000)]:
        e = normalize(str(h["Event"]), h, 0.0)
        if e is not None:
            tracker.feed(e)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"tracker memory over ~10,000 calls: peak {peak / 1e6:.1f} MB, held at the end "
          f"{held / 1e6:.1f} MB (bounded: open calls + the last "
          f"{tracker.config.finished_memory:,} finished linkedids)")

    wire = b"".join(to_wire(h) for h in stream[:400_000])
    reads = [wire[i : i + 4096] for i in range(0, len(wire), 4096)]
    framer, tracker = AmiFramer(), CallTracker()
    n = 0
    t0 = time.perf_counter()
    for r in reads:
        for msg in framer.feed(r):
            n += 1
            e = normalize(msg.event or "", msg.headers, 0.0)
            if e is not None:
                tracker.feed(e)
    dt = time.perf_counter() - t0
    print(f"bytes -> framing + normalize + tracker: {n / dt:,.0f} events/s "
          f"(first {n:,} events, 4 KiB reads)")
    print(f"goal: >= 50,000 events/s (a clinic call is ~{per_call:.0f} events)")


if __name__ == "__main__":
    main()
