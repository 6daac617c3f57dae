"""``/metrics`` in Prometheus' text format, for the clinic's monitoring. Open on loopback; from
elsewhere only with ``Authorization: Bearer <web.metrics_token>`` (empty: loopback only). No
personal data: counts and timings only."""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import Any

from aiohttp import web

from agi.server import LATENCY_BUCKETS
from crm import metrics
from pbx.services import SERVICES, health


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _allowed(request: web.Request) -> bool:
    token = request.app[SERVICES].settings.web.metrics_token
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return True
    return _loopback(request.remote)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def render(samples: list[tuple[str, str, str, dict[str, str], float]]) -> str:
    """(name, type, help, labels, value) -> the exposition format, one HELP/TYPE per name."""
    out: list[str] = []
    seen: set[str] = set()
    for name, kind, text, labels, value in samples:
        family = name
        if kind == "histogram":  # its _bucket, _sum and _count samples are one family
            family = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        if family not in seen:
            out += [f"# HELP {family} {text}", f"# TYPE {family} {kind}"]
            seen.add(family)
        label = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        out.append(f"{name}{{{label}}} {value:g}" if label else f"{name} {value:g}")
    return "\n".join(out) + "\n"


async def metrics_page(request: web.Request) -> web.Response:
    if not _allowed(request):
        raise web.HTTPForbidden(text="metrics: loopback or the metrics token only")
    services = request.app[SERVICES]
    status: dict[str, Any] = await health(services)
    db = services.db
    calls = services.calls
    s: list[tuple[str, str, str, dict[str, str], float]] = [
        ("clinic_pbx_up", "gauge", "1 for each part that works", {"part": part}, float(bool(status[part])))
        for part in ("db", "db_writes", "disk", "ami", "ari", "agi")
    ]
    s += [
        ("clinic_pbx_calls_in_progress", "gauge", "calls up now", {}, status["live_calls"]),
        ("clinic_pbx_calls_waiting_to_be_saved", "gauge", "finished calls not committed yet", {},
         status["calls_pending"]),
        ("clinic_pbx_disk_free_bytes", "gauge", "free space in the state folder", {}, status["disk_free_mb"] * 2**20),
        ("clinic_pbx_ami_events_total", "counter", "AMI events read", {}, status["ami_events"]),
        ("clinic_pbx_agi_requests_total", "counter", "FastAGI requests", {}, status["agi_requests"]),
        ("clinic_pbx_asyncio_tasks", "gauge", "asyncio tasks", {}, status["tasks"]),
    ]
    s += [("clinic_pbx_provider_up", "gauge", "1 while a provider is registered (or answers, when it needs no registration)",
           {"provider": f"trunk-{p['id']}"}, float(p["status"] in ("registered", "reachable")))
          for p in status["providers"]]
    if calls is not None:
        s += [("clinic_pbx_calls_recorded_total", "counter", "calls saved", {"source": k},
               calls.stats[k]) for k in ("records", "backfilled")]
        s.append(("clinic_pbx_call_write_errors_total", "counter", "failed call writes (retried)", {},
                  calls.stats["write_errors"]))
        latencies = list(calls.commit_latency)
        s += [("clinic_pbx_commit_latency_seconds", "summary", "AMI event in -> call committed",
               {"quantile": str(q)}, quantile(latencies, q)) for q in (0.5, 0.99)]
        s.append(("clinic_pbx_commit_latency_seconds_count", "counter", "calls timed", {}, len(latencies)))
    if services.pump is not None:
        s.append(("clinic_pbx_reconnects_total", "counter", "links re-established", {"link": "ami"},
                  max(0, services.pump.stats.links_up - 1)))
    if services.ari is not None:
        s.append(("clinic_pbx_reconnects_total", "counter", "links re-established", {"link": "ari"},
                  max(0, services.ari.connects - 1)))
    if services.agi is not None:  # a Prometheus histogram: cumulative buckets, sum, count
        cumulative = 0
        for bound, n in zip([*LATENCY_BUCKETS, float("inf")], services.agi.latency_counts, strict=True):
            cumulative += n
            s.append(("clinic_pbx_agi_latency_seconds_bucket", "histogram", "FastAGI request handling time",
                      {"le": "+Inf" if bound == float("inf") else f"{bound:g}"}, cumulative))
        s.append(("clinic_pbx_agi_latency_seconds_sum", "histogram", "", {}, services.agi.latency_sum))
        s.append(("clinic_pbx_agi_latency_seconds_count", "histogram", "", {}, cumulative))
    for outcome, n in sorted((await metrics.callback_outcomes(db)).items()):
        s.append(("clinic_pbx_callback_attempts_total", "counter", "website callback robot attempts by outcome",
                  {"outcome": outcome}, n))
    s.append(("clinic_pbx_callback_requests_open", "gauge", "callback requests not closed yet", {},
              await metrics.callback_open(db)))
    s.append(("clinic_pbx_mail_outbox_depth", "gauge", "letters waiting to be sent", {}, await metrics.mail_depth(db)))
    for outcome, n in sorted((await metrics.robot_outcomes(db)).items()):
        s.append(("clinic_pbx_robot_attempts_total", "counter", "robot calls by outcome", {"outcome": outcome}, n))
    s.append(("clinic_pbx_outbox_depth", "gauge", "messages waiting to be sent", {}, await metrics.outbox_depth(db)))
    now = services.clock.now()
    oldest = await metrics.oldest_due_job(db, now)
    s.append(("clinic_pbx_job_lag_seconds", "gauge", "how late the oldest due job is", {},
              max(0.0, now - oldest) if oldest is not None else 0.0))
    s.append(("clinic_pbx_scrape_timestamp_seconds", "gauge", "when this page was made", {}, time.time()))
    return web.Response(text=render(s), content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})
