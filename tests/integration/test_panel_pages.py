"""Every page of the panel in headless Chromium at 1366×768 and 1920×1080 with the demo clinic:
no horizontal scroll, no ISO date and no unformatted phone number in the visible text (one
formatting for the whole panel), every form field labelled; screenshots of each page go to
``.local/screenshots/`` (not committed) for a reviewer. The home page's figures follow a real
SIPp call over the live channel, without a reload."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from pbx.outbound.sipp import start_operator_call
from pbx.settings import PROJECT_DIR
from tests.integration.helpers import start_phones, stop_all, wait_call
from tests.integration.test_browser import open_panel, page  # noqa: F401 - the browser fixture
from web.formatting import phone

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]

SHOTS = PROJECT_DIR / ".local" / "screenshots"
PAGES = ["/", "/incoming", "/calls", "/patients", "/patients/1", "/patients/1/edit", "/patients/new", "/schedule",
         "/tasks", "/escort", "/reports", "/reports/escort", "/appeals", "/appeals/channels", "/callbacks",
         "/settings", "/settings/telephony", "/setup", "/contacts", "/audit", "/booking?patient=1", "/calls/manual", "/shift"]
ISO_DAY = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
RAW_PHONE = re.compile(r"\+7\d{10}\b")
# what the checks below see: the visible text, page width, inputs with no label of any kind
SCAN = """() => {
  const unlabelled = [...document.querySelectorAll('input, select, textarea')].filter((e) =>
    e.type !== 'hidden' && e.offsetParent !== null && !e.closest('label') && !e.getAttribute('aria-label')
    && !(e.id && document.querySelector('label[for="' + e.id + '"]')) && !e.title)
    .map((e) => e.outerHTML.slice(0, 120));
  return {text: document.body.innerText, scroll: document.documentElement.scrollWidth,
          width: document.documentElement.clientWidth, unlabelled};
}"""

DOCKED = """() => {
  document.body.classList.add('with-cards');
  const main = document.querySelector('main');
  const dock = parseFloat(getComputedStyle(document.documentElement).getPropertyValue('--dock')) *
               parseFloat(getComputedStyle(document.documentElement).fontSize);
  const right = main.getBoundingClientRect().right, limit = window.innerWidth - dock;
  const clipped = ['auto', 'hidden', 'scroll'].includes(getComputedStyle(main).overflowX);
  const fits = main.scrollWidth <= main.clientWidth;
  document.body.classList.remove('with-cards');
  return {ok: right <= limit && (fits || clipped), right, limit, fits, clipped};
}"""


async def test_every_page_reads_alike_and_fits(server, page, tmp_path: Path) -> None:  # noqa: F811
    services, _ = server
    base = await open_panel(services, page, role="director", history="edit")
    # a real call first, so the history, the home page and the reports hold a formatted number
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 800}})
    call = await start_operator_call(services.settings, "+79161234567", "74951110001", tmp_path, talk_ms=1500)
    assert await call.wait(30) == 0, call.errors
    await stop_all(*phones.values())
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for width, height in ((1366, 768), (1920, 1080)):
        await page.set_viewport_size({"width": width, "height": height})
        for path in PAGES:
            response = await page.goto(base + path)
            assert response is not None and response.ok, (path, response and response.status)
            seen = await page.evaluate(SCAN)
            name = path.strip("/").replace("/", "_").replace("?", "_").replace("=", "-") or "home"
            await page.screenshot(path=str(SHOTS / f"{width}x{height}_{name}.png"), full_page=True)
            if seen["scroll"] > seen["width"]:
                problems.append(f"{width}: {path} scrolls sideways ({seen['scroll']} > {seen['width']})")
            if iso := ISO_DAY.findall(seen["text"]):
                problems.append(f"{path}: ISO dates {iso[:3]}")
            if raw := RAW_PHONE.findall(seen["text"]):
                problems.append(f"{path}: unformatted numbers {raw[:3]}")
            if seen["unlabelled"]:
                problems.append(f"{path}: fields without a label {seen['unlabelled']}")
            # with call cards showing, the page keeps clear of the dock: main ends left of it and
            # what does not fit scrolls inside main (clipped), never under the cards
            clear = await page.evaluate(DOCKED)
            if not clear["ok"]:
                problems.append(f"{width}: {path} reaches under the card dock {clear}")
    assert not problems, "\n".join(problems)
    # the home page's chart draws today's real figures: its last column is today's counters
    await page.goto(base + "/")
    today = await page.inner_text(".calls-today")
    incoming = int(re.search(r"входящие (\d+)", today).group(1))
    drawn = await page.evaluate("""() => {
      const cols = document.querySelectorAll('figure.chart g.column');
      const r = cols[cols.length - 1].querySelector('rect[data-series=incoming]');
      return [cols.length, r ? Number(r.dataset.value) : 0];
    }""")
    assert drawn == [14, incoming] and incoming >= 1, (drawn, today)
    # the checks bite: the history shows the call's number formatted
    await page.goto(base + "/calls")
    assert "+7 916 123-45-67" in await page.inner_text("table.calls")


async def test_home_figures_follow_a_call_live(server, page, tmp_path: Path) -> None:  # noqa: F811
    """The home page's «Звонки сегодня» and «Перезвонить» change when a real call ends, over
    the live channel (no reload: a marker set on the page survives)."""
    services, log = server
    base = await open_panel(services, page)
    await services.calls.resynced.wait()
    await services.calls.settled()  # the earlier tests' calls backfilled from the CDR first
    await page.goto(base + "/")
    before = await page.inner_text(".calls-today strong")
    await page.evaluate("window.__stay = 1")
    # nobody answers: the caller gives up while 101 rings, a missed call to call back
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 60_000}})
    number = f"+7903{random.randrange(10**7):07d}"  # this run's: the CDR backfill brings earlier runs' calls
    call = await start_operator_call(services.settings, number, "74951110001", tmp_path, cancel_after_ms=4000)
    ring = await log.wait_for(lambda e: e.name == "DialBegin" and "PJSIP/101-" in str(e.headers.get("DestChannel")))
    # the ringing card sits in the dock, and the page makes room: nothing of it lies under the dock
    await page.locator("#cards .card.ringing").wait_for(timeout=10_000)
    overlap = await page.evaluate("""() => {
      const dock = document.getElementById('cards').getBoundingClientRect();
      return [...document.querySelectorAll('main a, main button, main input, main select, main th')]
        .map((e) => e.getBoundingClientRect()).filter((r) => r.width && r.right > dock.left && r.left < dock.right
          && r.bottom > dock.top && r.top < dock.bottom).length;
    }""")
    assert overlap == 0
    # collapsible: the dock folds to its head and gives the page its width back
    await page.click("#cards .dock-head")
    assert await page.locator("#cards .card").count() == 0
    assert not await page.evaluate("document.body.classList.contains('with-cards')")
    await page.click("#cards .dock-head")
    await page.locator("#cards .card.ringing").wait_for()
    assert await call.wait(30) == 0, call.errors
    await stop_all(*phones.values())
    await wait_call(services, ring.headers["Linkedid"])
    row = page.locator(".call-back tr.missed", has_text=phone(number))
    await row.wait_for(timeout=15_000)
    await expect(page.locator(".calls-today strong")).to_have_text(str(int(before) + 1))
    assert await page.evaluate("window.__stay") == 1  # the same page, refreshed in place


async def test_appeals_detail_all_and_the_record_hover_in_the_browser(server, page) -> None:  # noqa: F811
    """#32, seed 004: «чтобы развернуть строки сразу по всему отчету, достаточно нажать по первой
    строке правой кнопкой мыши → «Детализировать»»; «Двойным щелчком левой кнопки мыши… откройте»;
    «Чтобы узнать подробности о записях, наведите курсор на ячейку» (the two-column hover)."""
    from datetime import datetime, timedelta
    from datetime import time as day_time
    from zoneinfo import ZoneInfo

    from crm import calls, patients, schedule
    from crm.rules.call_records import CallRecord, LegRecord

    services, _ = server
    base = await open_panel(services, page, role="director", history="edit")
    tz = ZoneInfo(services.settings.time_zone)
    day = datetime.now(tz).date() - timedelta(days=1)
    noon = datetime.combine(day, day_time(12), tz).timestamp()
    db = services.db
    for n in range(2):  # two clients, each a missed call and a talk half an hour later: two обращения of two contacts
        phone = f"7903555010{n}"
        pid = await patients.add_patient(db, "Браузерова", f"Ирина{n}", phone_numbers=(f"+{phone}",))
        for lid, t0, answered in ((f"br{n}.1", noon + n * 60, False), (f"br{n}.2", noon + 1800 + n * 60, True)):
            leg = LegRecord("101", lid + ".1", "answered" if answered else "no_answer", t0,
                            t0 + 5 if answered else None, t0 + 65, not answered)
            await calls.save_call(db, CallRecord(lid, "incoming", "incoming" if answered else "missed", "74951110001",
                                                 phone, "74951110001", "reception", (leg,), "101" if answered else "",
                                                 t0, t0 + 5 if answered else None, t0 + 65, 5.0,
                                                 60.0 if answered else 0.0, "caller", ""))
        await schedule.book(db, patient_id=pid, doctor_id=1, minutes=30, now=noon + 1900,
                            starts_at=datetime.combine(day + timedelta(days=3 + n), day_time(10), tz))
    await page.goto(f"{base}/appeals?since={day.isoformat()}&until={day.isoformat()}")
    rows = page.locator("table.appeals tbody.appeal details:not(.channel-rules)")
    assert await rows.count() >= 2
    opened = "() => [...document.querySelectorAll('table.appeals tbody.appeal details:not(.channel-rules)')].map(d => d.open)"
    assert not any(await page.evaluate(opened))
    await page.locator("button.detail-all").click()
    assert all(await page.evaluate(opened))
    await expect(page.locator("button.detail-all")).to_have_text("Свернуть")
    # a right click on the first row: the menu says «Свернуть» now, and folds them all
    await page.locator("table.appeals tbody.appeal tr").first.locator("td").nth(3).click(button="right")
    item = page.locator(".context-menu button")
    await expect(item).to_have_text("Свернуть")
    await item.click()
    assert not any(await page.evaluate(opened))
    await expect(page.locator(".context-menu")).to_have_count(0)
    await page.locator("table.appeals tbody.appeal tr").first.locator("td").nth(3).click(button="right")
    await expect(item).to_have_text("Детализировать")
    await item.click()
    assert all(await page.evaluate(opened))
    await page.locator("button.detail-all").click()
    # a double click opens one обращение only
    mine = page.locator("table.appeals tbody.appeal", has_text="Браузерова Ирина0")
    await mine.locator("tr td").nth(3).dblclick()
    states = await page.evaluate(opened)
    assert states.count(True) == 1
    # the record's hover: hidden until the cursor is on the cell, then the two columns
    hover = mine.locator(".record-hover")
    await expect(hover).to_be_hidden()
    await mine.locator(".records").hover()
    await expect(hover).to_be_visible()
    await expect(hover.locator("th").first).to_have_text("В момент обращения")
    await expect(hover.locator("td").nth(1)).to_have_text("Будущий приём, не подтверждён")


async def test_a_real_call_in_progress_is_the_appeals_orange_row(server, page, tmp_path: Path) -> None:  # noqa: F811
    """#32, seed 004: «Оранжевым — текущий звонок»: a SIPp patient talking to desk phone 101 is an
    orange row of today's «История обращений» while it lasts, and an обращение once it ended."""
    services, log = server
    base = await open_panel(services, page, role="director", history="edit")
    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 500}})
    number = f"+7903{random.randrange(10**7):07d}"
    call = await start_operator_call(services.settings, number, "74951110001", tmp_path, talk_ms=6000)
    try:
        talking = await log.wait_for(lambda e: e.name == "BridgeEnter" and e.headers["Channel"].startswith("PJSIP/101-"))
        row = page.locator("table.appeals tr.current", has_text=phone(number))
        for _ in range(50):  # the hub publishes the card a moment after Asterisk's event
            await page.goto(base + "/appeals")
            if await row.count():
                break
            await page.wait_for_timeout(100)
        await expect(row).to_contain_text("Разговор: 101")
        await expect(row).to_contain_text("Входящий. Текущий")
        colour = await row.locator("td").first.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(255, 224, 178)", colour  # orange
        assert await call.wait(30) == 0, call.errors
    finally:
        call.kill()
        await stop_all(call, *phones.values(), wait=1)
    await wait_call(services, talking.headers["Linkedid"])
    await page.goto(base + "/appeals")
    await expect(page.locator("table.appeals tr.current")).to_have_count(0)
    await expect(page.locator("table.appeals tbody.appeal", has_text=phone(number))).to_have_count(1)
