"""«История обращений» in the panel (seed 004): every contact of a period (calls, manual dialogs,
website requests) either one by one («Без группировки») or joined into обращения («По
обращениям»: one client, one clinic day), with what each brought (the main result's symbol,
its success), totals on up to two levels, filters, a patient's own history, and CSV. For users
with the right «История обращений» (administrators and directors by default; the recordings'
players need the call history's right too)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from crm import ad_channels, appeal_days, comments, directory
from crm import appeals as store
from crm.dates import parse_day
from crm.rules import ad_channels as ac
from crm.rules import appeals as ap
from crm.rules.call_records import caller_hidden
from pbx.services import SERVICES
from web import charts
from web.appeals_current import current_calls
from web.common import (
    SETTINGS_ROLES,
    Viewer,
    clinic_tz,
    csv_lines,
    csv_safe,
    int_or_none,
    local_today,
    require_settings,
    safe_back,
    trace,
    viewer,
)
from web.history import duration
from web.live import LIVE_HUB

LEVELS: dict[str, tuple[str, Callable[[ap.Group], str]]] = {
    "employee": ("Сотрудник", lambda f: f.employee or "—"),
    "success": ("Успешность", lambda f: f.success),
    "topic": ("Тема", lambda f: f.topic or "—"),
    "channel": ("Рекламный канал", lambda f: f.channel or "—"),
    "who": ("Кто, тип", lambda f: f.who or "—"),
    "day": ("День", lambda f: f.day.strftime("%d.%m.%Y")),
}
CHART_DAYS = 92  # a longer period has no chart by day (and its groups are read without days)
STATE_NAMES = {ap.FUTURE: "будущий приём", ap.DONE: "приём состоялся", ap.VOID: "приём отменён / неявка",
               ap.WAIT_OPEN: "лист ожидания открыт", ap.WAIT_BOOKED: "лист ожидания закрыт",  # seed 004: «не отображается, как именно»
               ap.WAIT_CLOSED: "лист ожидания закрыт"}
MAX_DAYS = 366
MAX_CONTACTS = 200_000  # grouped anew in memory: about 500 MB of the server's memory while one page is built
# from the stored days the page holds groups, not обращения; only when a day cannot be stored (the
# database held by another process) it falls back to a facet per обращение in memory (~100 B each)
MAX_STORED_CONTACTS = 2_000_000
HIGH_TICKET = ("Имплантация", "Ортодонтия", "Хирургия")  # the demo's topics a preset picks first


def setup_appeals_page(app: web.Application) -> None:
    app.router.add_get("/appeals", appeals_page)
    app.router.add_get("/appeals.csv", appeals_csv)
    app.router.add_get("/appeals/channels", channels_page)
    app.router.add_post("/appeals/channels", channel_submit)
    app.router.add_post("/appeals/channels/rules", rule_submit)
    app.router.add_post("/appeals/channels/spend", spend_submit)
    app.router.add_post(r"/appeals/comments/{id:\d{1,18}}/delete", comment_delete)
    app.router.add_post(r"/appeals/channels/rules/{id:\d{1,18}}/delete", rule_delete)


def label(c: ap.Contact) -> str:
    """The hover text of a contact's symbol: «Входящий. Пропущенный», «Заявка. Актуальная»…"""
    name = ap.KIND_NAMES[c.kind]
    if c.kind in (ap.REQUEST, ap.REQUEST_DIALOG):
        return f"{name}. " + ("Просроченная" if c.overdue else "Актуальная" if c.missed else "Закрытая")
    if c.missed:
        return f"{name}. " + ("Пропущенный" if c.kind == ap.INCOMING else "Без ответа")
    if c.kind == ap.DIALOG and c.service:  # where it took place: «Диалог (ВКонтакте)»
        return f"{name} ({c.service})"
    return name


async def require_appeals(request: web.Request, *, or_settings: bool = False) -> Viewer:
    """The right «История обращений» (seed 004); the channel directory is also the settings
    admins' to keep. Returns who is looking."""
    me = await viewer(request)
    if not (me.appeals or (or_settings and me.role in SETTINGS_ROLES)):
        raise web.HTTPForbidden(text="Нет доступа к истории обращений")
    return me


def _days_asked(q: Any, today: date, patient: int | None) -> tuple[date, date]:
    """The report's first and last clinic day (a patient's: from the start by default)."""
    try:
        since_day = parse_day(q["since"]) if q.get("since") else (date(2000, 1, 1) if patient else today)
        until_day = parse_day(q["until"]) if q.get("until") else today
    except ValueError:
        raise web.HTTPBadRequest(text="Неверная дата") from None
    if until_day < since_day or ((until_day - since_day).days >= MAX_DAYS and patient is None):
        raise web.HTTPBadRequest(text="Неверный период (не длиннее года)")
    return since_day, until_day


def _narrowing(q: Any) -> store.Narrowing:
    return store.Narrowing(tuple(k for k in q.getall("kind", []) if k in ap.KIND_NAMES),
                           tuple(w for w in q.getall("who", []) if w), tuple(t for t in q.getall("topic", []) if t),
                           tuple(g for g in q.getall("group", []) if g), tuple(c for c in q.getall("channel", []) if c))


async def _period(db: Any, since_day: date, until_day: date, today: date, tz: Any, patient: int | None,
                  narrow: store.Narrowing) -> appeal_days.Period:
    since = datetime.combine(since_day, time(0), tz).timestamp()
    until = datetime.combine(until_day + timedelta(days=1), time(0), tz).timestamp()
    limit = MAX_CONTACTS if narrow else MAX_STORED_CONTACTS
    if patient is None and (n := await appeal_days.contacts_in(db, since_day, until_day)) > limit:
        # a chain's year (a million contacts) would take gigabytes of the server's memory
        raise web.HTTPBadRequest(text=f"За период около {n} контактов: отчёт {'с отбором по контактам ' if narrow else ''}"
                                 f"строится не больше чем по {limit}. Выберите период короче.")
    if patient is not None or narrow:  # grouped anew from the narrowed contacts
        return appeal_days.Period.of(await store.build(db, since, until, today, tz, patient_id=patient,
                                                       narrow=narrow), since_day, until_day)
    return await appeal_days.period(db, since_day, until_day, today, tz)  # the stored days (exact: see crm/appeal_days.py)


async def _report(request: web.Request) -> dict[str, Any]:
    me = await require_appeals(request)
    services = request.app[SERVICES]
    tz, today = clinic_tz(request), local_today(request)
    q = request.query
    patient = int_or_none(q.get("patient")) if q.get("patient") else None
    since_day, until_day = _days_asked(q, today, patient)
    narrow = _narrowing(q)
    kinds, whos, topics, groups, channels = (list(narrow.kinds), list(narrow.whos), list(narrow.topics),
                                             list(narrow.groups), list(narrow.channels))
    period = await _period(services.db, since_day, until_day, today, tz, patient, narrow)
    names = await comments.caller_types(services.db, with_retired=True)
    channel_rules = await ad_channels.rules(services.db)
    employee = q.get("employee", "")
    successes = [s for s in q.getall("success", []) if s in ap.SUCCESSES]
    pick = appeal_days.Pick(tuple(successes), employee)
    levels = [x for x in (q.get("level1", ""), q.get("level2", "")) if x in LEVELS]
    counted = await period.groups(services.db, pick,
                                  by_day=(until_day - since_day).days <= CHART_DAYS or "day" in levels)
    channel_of = [g.channel or "Канал не определён" for g in counted]
    monthly = await ad_channels.spend(services.db, since_day.strftime("%Y-%m"), until_day.strftime("%Y-%m"))
    cost_rows = ac.costs([(ch, g.success in ap.BOOKED_SUCCESSES, g.success == ap.CAME, g.n) for ch, g in zip(
        channel_of, counted, strict=True)], ac.period_spend(monthly, since_day, until_day)) if (monthly or channel_rules) else []
    topic_names = sorted(period.topic_names)
    return {
        "period": period, "pick": pick, "count": sum(g.n for g in counted),
        "contacts_total": sum(g.contacts for g in counted), "tz": tz, "view": q.get("view", "grouped"),
        "q": {"since": since_day.isoformat(), "until": until_day.isoformat(), "kinds": kinds, "successes": successes,
              "employee": employee, "groups": groups, "channels": channels, "level1": q.get("level1", ""), "level2": q.get("level2", ""),
              "patient": patient or "", "whos": whos, "topics": topics},
        "who_names": sorted(period.who_names | set(names.values()) | {ap.PATIENT_TALK}), "topic_names": topic_names,
        "presets": presets(since_day, until_day, topic_names),
        "costs": cost_rows,
        "channel_chart": channel_chart([(g.day, ch, g.n) for g, ch in zip(counted, channel_of, strict=True)],
                                       since_day, until_day) if cost_rows else None,
        "totals": ap.totals(counted, [LEVELS[x][1] for x in levels]) if levels else [],
        "level_names": [LEVELS[x][0] for x in levels], "levels": {k: v[0] for k, v in LEVELS.items()},
        "kind_names": ap.KIND_NAMES, "success_names": ap.SUCCESSES, "state_names": STATE_NAMES,
        "employees": sorted(period.employees),
        "channel_rules": channel_rules, "channel_groups": sorted({r.group for r in channel_rules}), "channel_names": sorted({r.channel for r in channel_rules}),
        "label": label, "duration": duration, "query": request.query_string,
        "hidden_numbers": await directory.hidden_numbers(services.db), "shown_phone": shown_phone,
        "can_edit_history": me.history == "edit",
    }


PALETTE = ("#24527a", "#e07b00", "#1b7f3b", "#8e44ad", "#b00020", "#0097a7", "#8a94a3")


def channel_chart(appeals: list[tuple[date, str, int]], since: date, until: date) -> Any:
    """обращения ((day, channel, how many)) per day, stacked by channel (the six busiest by name,
    the rest together)."""
    if (until - since).days > CHART_DAYS or not appeals:
        return None
    busiest: dict[str, int] = {}
    for _, channel, n in appeals:
        busiest[channel] = busiest.get(channel, 0) + n
    top = sorted(busiest, key=lambda ch: -busiest[ch])[:6]
    series = [charts.Series(f"c{i}", ch, PALETTE[i]) for i, ch in enumerate(top)]
    if len(busiest) > len(top):
        series.append(charts.Series("rest", "Прочие каналы", PALETTE[-1]))
    key = {ch: f"c{i}" for i, ch in enumerate(top)}
    days: dict[date, dict[str, int]] = {since + timedelta(days=i): {} for i in range((until - since).days + 1)}
    for day, channel, n in appeals:
        row = days.setdefault(day, {})
        k = key.get(channel, "rest")
        row[k] = row.get(k, 0) + n
    return charts.stacked_columns([(d.strftime("%d.%m"), v) for d, v in sorted(days.items())], series,
                                  title="Обращения по дням и каналам")


def presets(since: date, until: date, topics: list[str]) -> list[tuple[str, str]]:
    """Seed 004's four uses, one click each for the period shown: the administrators' results,
    the «Не записался» review, the high-ticket directions, an ad channel's share of bookings."""
    period = {"since": since.isoformat(), "until": until.isoformat(), "view": "grouped", "who": ap.WANTS_BOOKING}
    costly = next((t for t in topics if t in HIGH_TICKET), topics[0] if topics else "")
    return [
        ("Результаты администраторов", urlencode(period | {"level1": "employee", "level2": "success"})),
        ("Работа над ошибками: не записались", urlencode(period | {"success": ap.NOT_BOOKED})),
        ("Направления с высоким чеком", urlencode(period | {"success": ap.NOT_BOOKED}
                                                           | ({"topic": costly} if costly else {}))),
        ("Рекламные каналы: доля записей", urlencode(period | {"level1": "channel", "level2": "success"})),
    ]


def shown_phone(c: ap.Contact, hidden: set[str]) -> str:
    """The contact's number as the page and the CSV may show it: none for a call through a
    clinic number that hides its callers (seed 000, ProDoctorov's)."""
    return "" if caller_hidden(c.kind, c.did in hidden) else c.phone


def summary(a: ap.Appeal) -> ap.Contact:
    """An обращение's row in «По обращениям»: its first contact, with what any of its contacts
    says (who, topic, employee, channel, comment, the recording) and the waits and talks summed."""
    def first(attr: str) -> Any:
        return next((getattr(c, attr) for c in a.contacts if getattr(c, attr)), getattr(a.first, attr))

    with_recording = next((c for c in a.contacts if c.recording), None)
    return dataclasses.replace(
        a.first, caller_type=first("caller_type"), topic=first("topic"), employee=first("employee"),
        channel=first("channel"), channel_group=first("channel_group"), channel_rule=first("channel_rule"),
        comment=first("comment"), recording=with_recording is not None,
        call_id=with_recording.call_id if with_recording else a.first.call_id,
        wait=sum(c.wait for c in a.contacts), duration=sum(c.duration for c in a.contacts))


def primary(a: ap.Appeal, info: dict[int, dict[str, Any]]) -> bool:
    """«Первичный»: a patient with no appointment made before this обращение."""
    p = info.get(a.patient_id) if a.patient_id is not None else None
    return p is not None and (p["first_booked"] is None or p["first_booked"] >= a.first.started)


PAGE_SIZE = 200  # обращения a page shows; counts, totals and the CSV take them all




@aiohttp_jinja2.template("appeals.html")
async def appeals_page(request: web.Request) -> dict[str, Any]:
    data = await _report(request)
    pages = max(1, -(-data["count"] // PAGE_SIZE))
    page = min(max(1, int_or_none(request.query.get("page")) or 1), pages)
    period, db = data["period"], request.app[SERVICES].db
    data["shown"] = await period.appeals(db, await period.refs(db, data["pick"], (page - 1) * PAGE_SIZE, PAGE_SIZE))
    data["hovers"] = await store.hovers(db, [r for a in data["shown"] for r in a.records], data["tz"])
    data["info"] = await store.patients_info(request.app[SERVICES].db, {
        a.patient_id for a in data["shown"] if a.patient_id is not None} | ({data["q"]["patient"]} if data["q"]["patient"] else set()))
    data["page"], data["pages"], data["first_shown"] = page, pages, (page - 1) * PAGE_SIZE + 1
    hub = request.app.get(LIVE_HUB)
    today = local_today(request)
    data["current"] = current_calls([card for cards in (*hub.local.values(), *hub.remote.values())
                                     for card, _ in cards.values()]) if (
        hub is not None and page == 1 and not data["q"]["patient"]
        and data["period"].first <= today <= data["period"].last) else []
    data["page_query"] = urlencode([(k, v) for k, v in request.query.items() if k != "page"])
    data["primary"] = primary
    data["summary"] = summary
    rules = data["channel_rules"]
    data["explain"] = lambda c: [(ac.KIND_NAMES[k], f"{r.value} → {r.channel}" if r else "—", fired)
                                 for k, r, fired in ac.explain(ap.facts_of(c), rules)]
    return data


@aiohttp_jinja2.template("ad_channels.html")
async def channels_page(request: web.Request) -> dict[str, Any]:
    me = await require_appeals(request, or_settings=True)
    db = request.app[SERVICES].db
    return {"groups": await ad_channels.directory(db), "kinds": ac.KIND_NAMES,
            "can_edit": me.role in SETTINGS_ROLES, "spend": await ad_channels.spend_list(db),
            "month": local_today(request).strftime("%Y-%m")}


async def comment_delete(request: web.Request) -> web.StreamResponse:
    """Seed 004: a comment that joined no call can be deleted (the history's edit right)."""
    if (await require_appeals(request)).history != "edit":
        raise web.HTTPForbidden(text="Нет права редактировать историю звонков")
    call_id = int(request.match_info["id"])
    if not await comments.delete_unlinked_comment(request.app[SERVICES].db, call_id):
        raise web.HTTPNotFound(text="Нет такого комментария без звонка")
    await trace(request, "comment_delete", "call", call_id)
    raise web.HTTPFound(safe_back((await request.post()).get("back"), "/appeals"))


async def spend_submit(request: web.Request) -> web.StreamResponse:
    """A channel's spend for a month (settings admins): the cost per обращение, booking, visit."""
    await require_settings(request)
    form = await request.post()
    channel = int_or_none(form.get("channel"))
    try:
        amount = float(str(form.get("amount", "")).replace(" ", "").replace(",", ".") or "x")
    except ValueError:
        raise web.HTTPBadRequest(text="Сумма — число рублей") from None
    try:
        if channel is None:
            raise ad_channels.ChannelError("Нет такого канала")
        await ad_channels.set_spend(request.app[SERVICES].db, channel, str(form.get("month", "")).strip(), amount)
    except ad_channels.ChannelError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    await trace(request, "ad_spend", "ad_channel", channel, f"{form.get('month')}: {amount:.0f}")
    raise web.HTTPFound("/appeals/channels#spend")


async def channel_submit(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    form = await request.post()
    db = request.app[SERVICES].db
    try:
        channel = await ad_channels.add_channel(db, str(form.get("group", "")), str(form.get("name", "")))
        if form.get("value"):
            await ad_channels.add_rule(db, channel, str(form.get("kind", "")), str(form.get("value", "")))
    except ad_channels.ChannelError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    await trace(request, "ad_channel", "ad_channel", channel)
    raise web.HTTPFound("/appeals/channels")


async def rule_submit(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    form = await request.post()
    channel = int_or_none(form.get("channel"))
    try:
        if channel is None:
            raise ad_channels.ChannelError("Нет такого канала")
        rule = await ad_channels.add_rule(request.app[SERVICES].db, channel, str(form.get("kind", "")),
                                          str(form.get("value", "")), int_or_none(form.get("position")) or 0)
    except ad_channels.ChannelError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    await trace(request, "ad_channel_rule", "ad_channel_rule", rule)
    raise web.HTTPFound("/appeals/channels")


async def rule_delete(request: web.Request) -> web.StreamResponse:
    await require_settings(request)
    rule = int(request.match_info["id"])
    await ad_channels.remove_rule(request.app[SERVICES].db, rule)
    await trace(request, "ad_channel_rule_removed", "ad_channel_rule", rule)
    raise web.HTTPFound("/appeals/channels")


async def appeals_csv(request: web.Request) -> web.StreamResponse:
    """Every обращение of the period (not only a page), streamed a day at a time: one row per
    обращение, or with «Без группировки» one per contact (with its обращение's start and success)."""
    data = await _report(request)
    await trace(request, "appeals_csv", "report", "appeals", request.query_string[:200])
    tz, db, flat = data["tz"], request.app[SERVICES].db, data["view"] == "flat"
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                           "Content-Disposition": 'attachment; filename="appeals.csv"'})
    await response.prepare(request)
    head = ["Дата", "Кто", "Тип обращения", "Тема", "Сотрудник", "Успешность", "Рекламный канал", "Комментарий",
            "Ожидание", "Длительность"]
    await response.write(("\ufeff" + csv_lines([head + (["Обращение", "Кто, тип"] if flat else ["Контактов"])])).encode())

    def when(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz).strftime("%d.%m.%Y %H:%M")

    async for appeals in data["period"].by_day(db, data["pick"]):
        info = await store.patients_info(db, {a.patient_id for a in appeals if a.patient_id is not None})
        rows: list[list[object]] = []
        for a in appeals:
            name = info[a.patient_id]["name"] if a.patient_id in info else None
            who = name or shown_phone(a.first, data["hidden_numbers"]) or "номер скрыт"
            if flat:
                rows += [[when(c.started), csv_safe(str(name or shown_phone(c, data["hidden_numbers"]) or "номер скрыт")),
                          label(c), csv_safe(c.topic), csv_safe(c.employee),
                          a.success, csv_safe(c.channel), csv_safe(c.comment), duration(c.wait), duration(c.duration),
                          when(a.first.started), csv_safe(c.caller_type)] for c in a.contacts]
                continue
            row = summary(a)
            rows.append([when(a.first.started), csv_safe(str(who)),
                         label(a.first), csv_safe(row.topic), csv_safe(row.employee), a.success,
                         csv_safe(row.channel), csv_safe(row.comment), duration(row.wait), duration(row.duration),
                         len(a.contacts)])
        await response.write(csv_lines(rows).encode())
    await response.write_eof()
    return response
