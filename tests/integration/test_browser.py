"""The panel in real headless Chromium (Debian's, driven by Playwright) while a real call
rings: log in, pick the shift phone, a SIPp call through Asterisk rings desk phone 101 and the
card appears with the patient's name; it follows the call to its end."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from crm import users
from crm.demo import load_demo
from pbx.sipp import NEVER, start_operator_call
from tests.conftest import require
from tests.integration.helpers import start_phones, stop_all

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
CHROMIUM = os.environ.get("CLINIC_PBX_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Records when each call's card first appears, by the page's own clock.
SEEN = """
window.__seen = {};
new MutationObserver(() => {
  for (const c of document.querySelectorAll('#cards .card[data-linkedid]')) {
    if (!(c.dataset.linkedid in window.__seen)) window.__seen[c.dataset.linkedid] = Date.now();
  }
}).observe(document, {subtree: true, childList: true});
"""


@pytest.fixture
async def page():
    require("Chromium", shutil.which(CHROMIUM) is not None, "apt-get install chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        require("playwright", False, "pip install playwright")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(locale="ru-RU", viewport={"width": 1280, "height": 800})
        await context.add_init_script(SEEN)
        yield await context.new_page()
        await browser.close()


async def test_card_pops_for_a_real_call(server, page, tmp_path: Path) -> None:
    services, log = server
    await load_demo(services.db)
    await users.create_user(services.db, "anna", "верный-пароль", full_name="Анна Админова")
    base = f"http://127.0.0.1:{services.web_port}"

    await page.goto(base + "/login")
    await page.fill("input[name=login]", "anna")
    await page.fill("input[name=password]", "верный-пароль")
    await page.click("form.login button[type=submit]")
    await page.wait_for_url(base + "/shift")
    await page.check("input[value='101']")
    await page.click("form.shift button[type=submit]")
    await page.wait_for_url(base + "/", wait_until="commit")
    await page.wait_for_selector("#shift-phone")
    assert "Телефон: 101" in await page.text_content("#shift-phone")

    phones = await start_phones(services, tmp_path, {"101": {"ring_ms": 3000}, "102": {"ring_ms": NEVER}})
    call = await start_operator_call(services.settings, "+79161234567", "74951110001", tmp_path, talk_ms=2000)
    card = page.locator("#cards .card.ringing")
    await card.wait_for(timeout=10_000)
    assert "Петрова Анна Сергеевна" in await card.text_content()
    assert "Канал: Сайт" in await card.text_content()
    ring = await log.wait_for(lambda e: e.name == "DialBegin" and "PJSIP/101-" in str(e.headers.get("DestChannel")))
    seen = await page.evaluate("window.__seen")
    latency_ms = seen[ring.headers["Linkedid"]] - ring.received_at * 1000
    print(f"\nring -> card in the browser: {latency_ms:.0f} ms")

    talking = page.locator("#cards .card.talking")
    await talking.wait_for(timeout=10_000)
    assert "Назначить приём" in await talking.text_content()
    await page.screenshot(path=str(tmp_path / "card.png"))
    ended = page.locator("#cards .card.ended.completed")
    await ended.wait_for(timeout=15_000)
    assert await call.wait(30) == 0
    await stop_all(*phones.values())
