"""The phone in the browser (#34) in real headless Chromium against the real Asterisk: fake
media devices with a 440 Hz tone as the microphone, JsSIP registered over the panel's
/phone/ws relay, DTLS-SRTP media found by ICE on loopback. SIPp plays the patients (a 1000 Hz
tone) and the desk phones; Asterisk's CDR and the call's recording are the judges."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from crm import users
from crm.demo import load_demo
from pbx.asterisk.apply import items_of
from pbx.outbound.sipp import start_desk_phone, start_operator_call, start_operator_uas
from tests.conftest import require
from tests.integration.helpers import (
    billsec_agrees,
    log_in_with_phone,
    start_phones,
    stop_all,
    wait_call,
    wait_cdr,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("sip_guard")]
CHROMIUM = os.environ.get("CLINIC_PBX_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        # Asterisk's RTP is on loopback here: Chromium leaves loopback out of ICE unless told
        "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required"]
LINEAR = "74951110002"  # 101 first: 101 rings alone first, then the next phone
ANNA = "+79161234567"


def tone(path: Path, hz: int, rate: int, *extra: str) -> Path:
    subprocess.run(["sox", "-n", "-r", str(rate), "-c", "1", *extra, str(path), "synth", "60", "sine", str(hz),
                    "vol", "0.5"], check=True)
    return path


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The browser's microphone (440 Hz) and the patient's voice (1000 Hz, mu-law for SIPp)."""
    require("sox", shutil.which("sox") is not None, "apt-get install sox")
    out = tmp_path_factory.mktemp("tones")
    return {"mic": tone(out / "mic.wav", 440, 48000, "-b", "16"),
            "caller": tone(out / "caller.wav", 1000, 8000, "-e", "u-law")}


@pytest.fixture
async def chromium(tones: dict[str, Path]) -> AsyncIterator[Any]:
    require("Chromium", shutil.which(CHROMIUM) is not None, "apt-get install chromium")
    require("the JsSIP bundle", (Path(__file__).parents[2] / "web/static/vendor/jssip.min.js").exists(),
            "make install (scripts/install-web.sh)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM,
                                          args=[*ARGS, f"--use-file-for-fake-audio-capture={tones['mic']}"])
        context = await browser.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900},
                                            permissions=["microphone"])
        yield context
        await browser.close()


async def browser_shift(services: Any, context: Any) -> tuple[Any, str, str]:
    """Анна logs in and chooses «Телефон в браузере»; (the page, the panel's URL, her phone's
    number) once the page says it is registered."""
    await load_demo(services.db)
    await users.create_user(services.db, "anna", "верный-пароль", full_name="Анна Админова",
                            role="administrator", history_access="read")
    base = f"http://127.0.0.1:{services.web_port}"
    page = await context.new_page()
    await log_in_with_phone(page, base, "browser")
    await expect(page.locator("#bp-state")).to_contain_text("на связи", timeout=15_000)
    extension = await page.locator("#browser-phone").get_attribute("data-extension")
    assert extension is not None and re.fullmatch(r"19\d\d", extension)
    assert f"Телефон: {extension}" in await page.text_content("#shift-phone")
    return page, base, extension


async def contacts(services: Any, extension: str) -> list[str]:
    """The contacts Asterisk holds for the phone (its registrations), as AMI lists them."""
    reply = await services.ami.action({"Action": "PJSIPShowContacts"}, timeout=10)
    return [str(m.get("Uri")) for m in items_of(reply) if m.get("Event") == "ContactList"
            and str(m.get("ObjectName") or "").split(";@")[0] == extension]


async def native_format(services: Any, channel: str) -> str:
    reply = await services.ami.action({"Action": "Getvar", "Channel": channel,
                                       "Variable": "CHANNEL(audionativeformat)"})
    return str(items_of(reply)[0].get("Value"))


def band_rms(path: Path, low: int, high: int) -> float:
    """The RMS of one frequency band of a recording (sox's sinc band-pass, then stat)."""
    out = subprocess.run(["sox", str(path), "-n", "sinc", f"{low}-{high}", "stat"], capture_output=True,
                         text=True, check=True).stderr
    return float(re.search(r"RMS\s+amplitude:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]


async def test_a_queue_call_rings_the_browser_and_is_answered_from_the_card(server, chromium, tones,
                                                                             tmp_path: Path) -> None:
    services, log = server
    page, _, ext = await browser_shift(services, chromium)
    phones = await start_phones(services, tmp_path, {})  # the desk phones ring and nobody answers
    call = await start_operator_call(services.settings, ANNA, "74951110001", tmp_path, talk_ms=8000,
                                     audio=tones["caller"])
    card = page.locator("#cards .card.ringing", has_text="Петрова Анна Сергеевна")
    await card.locator("button.answer").click(timeout=15_000)
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "talking", timeout=10_000)
    await expect(page.locator("#cards .card.talking")).to_be_visible(timeout=10_000)
    begin = await log.wait_for(lambda e: e.name == "DialBegin"
                               and str(e.headers.get("DestChannel", "")).startswith(f"PJSIP/{ext}-"))
    # a patient's G.711 call reaches the browser in G.711: nothing to transcode
    assert await native_format(services, begin.headers["DestChannel"]) == "(ulaw)"
    # the microphone's level meter moves with the fake device's tone; the device is listed
    await page.wait_for_function("document.getElementById('bp-level').value > 0.05", timeout=5_000)
    assert await page.locator("#bp-mic option").count() >= 1
    # booking from the card while talking opens in a new tab: this one keeps the call
    async with chromium.expect_page() as opened:
        await page.locator("#cards .card.talking a", has_text="Назначить приём").click()
    booking = await opened.value
    await booking.wait_for_load_state()
    assert "/booking?" in booking.url
    await expect(booking.locator("#bp-state")).to_contain_text("в другой вкладке")
    assert "/booking" not in page.url
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "talking")
    assert await call.wait(40) == 0, call.errors
    await stop_all(*phones.values())
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "idle", timeout=10_000)
    linkedid = begin.headers["Linkedid"]
    record = await wait_call(services, linkedid)
    assert record["answered_by_ext"] == ext and record["call_type"] == "incoming"
    anna = services.db.query_now("SELECT id FROM users WHERE login = 'anna'")[0][0]
    assert record["answered_by_user"] == anna  # the browser phone is Анна's phone in the records
    rows = await wait_cdr(services.settings.cdr_db_path, linkedid, count=4)
    mine = [r for r in rows if r["dstchannel"].startswith(f"PJSIP/{ext}-")]
    assert [r["disposition"] for r in mine] == ["ANSWERED"], rows
    assert abs(int(mine[0]["billsec"]) - 8) <= 1  # the caller's SIPp hung up 8 s after the answer
    assert billsec_agrees(int(mine[0]["billsec"]), record["talk_seconds"])
    # both sides are in the recording: the browser's 440 Hz and the patient's 1000 Hz
    recording = services.settings.recordings_dir / f"{linkedid}.wav"
    assert band_rms(recording, 400, 480) > 0.02, "the browser's side is silent"
    assert band_rms(recording, 950, 1050) > 0.02, "the patient's side is silent"


async def test_click_to_call_rings_the_browser_first(server, chromium, tmp_path: Path) -> None:
    services, log = server
    page, base, ext = await browser_shift(services, chromium)
    far = await start_operator_uas(services.settings, tmp_path, ring_ms=500, hangup_ms=3000)
    await page.goto(base + "/patients/2")  # Иванов, +79031112233
    await expect(page.locator("#bp-state")).to_contain_text("на связи", timeout=15_000)
    await page.click(".patient-head button.dial")
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "ringing", timeout=10_000)
    assert not [e for e in log.events if e.name == "DialBegin" and "operator" in str(e.headers.get("DestChannel"))]
    await page.click("#bp-answer")
    await log.wait_for(lambda e: e.name == "DialBegin" and "PJSIP/operator" in str(e.headers.get("DestChannel")))
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "idle", timeout=20_000)
    assert await far.wait(20) == 0, far.errors
    first = next(e for e in log.events if e.name == "Newchannel"
                 and str(e.headers.get("Channel", "")).startswith(f"PJSIP/{ext}-"))
    record = await wait_call(services, first.headers["Linkedid"])
    assert record["direction"] == "outgoing" and record["phone_e164"] == "+79031112233"
    assert record["answered_by_ext"] == ext and record["talk_seconds"] > 1.5
    # the browser dials a colleague itself (its offer puts Opus first; the box keeps G.711)
    desk = await start_desk_phone(services.settings, "101", tmp_path, ring_ms=500, hangup_ms=3000)
    await page.fill("#bp-number", "101")
    await page.click("#bp-dial")
    out = await log.wait_for(lambda e: e.name == "DialBegin" and e.headers.get("DestChannel", "").startswith("PJSIP/101-")
                             and e.headers.get("Channel", "").startswith(f"PJSIP/{ext}-"))
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "talking", timeout=10_000)
    assert await native_format(services, out.headers["Channel"]) == "(ulaw)"
    assert await desk.wait(20) == 0, desk.errors
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "idle", timeout=10_000)
    rows = await wait_cdr(services.settings.cdr_db_path, out.headers["Linkedid"], count=1)
    assert [(r["dstchannel"].split("-")[0], r["disposition"]) for r in rows] == [("PJSIP/101", "ANSWERED")]


async def test_hold_and_transfer_to_a_desk_phone(server, chromium, tones, tmp_path: Path) -> None:
    services, log = server
    page, _, ext = await browser_shift(services, chromium)
    ringing = await start_phones(services, tmp_path, {})  # the desk phones ring and nobody answers
    call = await start_operator_call(services.settings, ANNA, "74951110001", tmp_path, talk_ms=14000,
                                     audio=tones["caller"])
    await page.locator("#bp-answer").click(timeout=15_000)
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "talking", timeout=10_000)
    await stop_all(*ringing.values())  # the answer cancelled their ringing
    # mute: Asterisk hears the browser's tone stop, and start again once unmuted
    mine = await log.wait_for(lambda e: e.name == "BridgeEnter" and e.headers["Channel"].startswith(f"PJSIP/{ext}-"))
    channel = mine.headers["Channel"]
    await services.ami.action({"Action": "Setvar", "Channel": channel, "Variable": "TALK_DETECT(set)", "Value": "600"})
    def talking(name: str, after: float = 0.0) -> Any:
        return lambda e: e.name == name and e.headers.get("Channel") == channel and e.received_at > after

    await log.wait_for(talking("ChannelTalkingStart"))
    await page.click("#bp-mute")
    silent = await log.wait_for(talking("ChannelTalkingStop"))
    await page.click("#bp-mute")
    await log.wait_for(talking("ChannelTalkingStart", silent.received_at))
    (tmp_path / "target").mkdir()
    target = await start_desk_phone(services.settings, "102", tmp_path / "target", ring_ms=800)
    await page.click("#bp-hold")
    held = await log.wait_for(lambda e: e.name == "Hold" and str(e.headers.get("Channel", "")).startswith(f"PJSIP/{ext}-"))
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "held", timeout=5_000)
    await page.click("#bp-hold")
    await log.wait_for(lambda e: e.name == "Unhold" and e.headers.get("Channel") == held.headers["Channel"])
    # the keypad sends RFC 4733 digits into the call (the callback robot's key)
    await page.locator("#bp-keys button", has_text="5").click()
    await log.wait_for(lambda e: e.name == "DTMFEnd" and e.headers.get("Channel") == held.headers["Channel"]
                       and e.headers.get("Digit") == "5" and e.headers.get("Direction") == "Received")
    await page.fill("#bp-transfer-to", "102")
    await page.click("#bp-transfer")
    transfer = await log.wait_for(lambda e: e.name == "BlindTransfer")
    assert transfer.headers["TransfererChannel"] == held.headers["Channel"]
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "idle", timeout=10_000)
    assert await call.wait(60) == 0, call.errors
    assert await target.wait(10) == 0, target.errors
    record = await wait_call(services, held.headers["Linkedid"])
    assert record["answered_by_ext"] == ext
    assert [(leg["extension"], leg["outcome"]) for leg in record["legs"] if leg["outcome"] == "answered"] == [
        (ext, "answered"), ("102", "answered")]
    assert record["hangup_by"] == "caller"


async def test_a_dropped_websocket_registers_again_and_a_second_tab_does_not_steal(server, chromium) -> None:
    services, _ = server
    page, base, ext = await browser_shift(services, chromium)
    first = await contacts(services, ext)
    assert len(first) == 1
    # a second tab of the same user shows where the phone is and registers nothing
    other = await chromium.new_page()
    await other.goto(base + "/")
    await expect(other.locator("#bp-state")).to_contain_text("в другой вкладке")
    await asyncio.sleep(1.0)  # what a stealing tab would have had time to do
    assert await contacts(services, ext) == first
    # the network drops: every relayed WebSocket is cut under the page
    from web.browser_phone import OPEN_SOCKETS

    loop = asyncio.get_running_loop()
    sockets = list(services.web_app[OPEN_SOCKETS])  # type: ignore[attr-defined]
    assert len(sockets) == 1
    cut = loop.time()
    for ws in sockets:
        await ws.close()
    await expect(page.locator("#bp-state")).not_to_contain_text("на связи", timeout=5_000)
    await expect(page.locator("#bp-state")).to_contain_text("на связи", timeout=5_000)
    again = await contacts(services, ext)
    assert len(again) == 1 and again != first and loop.time() - cut < 5.0
    # the first tab closes: the second takes the phone over
    await page.close()
    await expect(other.locator("#bp-state")).to_contain_text("на связи", timeout=10_000)


async def test_a_declined_call_is_the_users_missed_call(server, chromium, tmp_path: Path) -> None:
    """«Отклонить» on the card: the browser says busy (486, as a desk phone's reject key: its leg
    is busy, not a miss of its own), the patient gives up waiting for the others, and the call is
    a missed call of the clinic, listed to call back."""
    services, log = server
    page, base, ext = await browser_shift(services, chromium)
    phones = await start_phones(services, tmp_path, {})  # the desk phones ring and nobody answers
    call = await start_operator_call(services.settings, "+79035550000", "74951110001", tmp_path,
                                     cancel_after_ms=4000)
    await page.locator("#cards .card.ringing button.decline").click(timeout=15_000)
    await expect(page.locator("#browser-phone")).to_have_attribute("data-call", "idle", timeout=5_000)
    begin = await log.wait_for(lambda e: e.name == "DialBegin"
                               and str(e.headers.get("DestChannel", "")).startswith(f"PJSIP/{ext}-"))
    end = await log.wait_for(lambda e: e.name == "DialEnd" and e.headers.get("DestChannel") == begin.headers["DestChannel"])
    assert await call.wait(30) == 0, call.errors
    gone = await log.wait_for(lambda e: e.name == "Hangup" and e.headers.get("Uniqueid") == begin.headers["Linkedid"])
    # the browser's leg ended by the decline, while the patient still waited for the others
    assert end.received_at < gone.received_at - 1.0, (end.headers, gone.headers)
    await stop_all(*phones.values(), wait=20)
    record = await wait_call(services, begin.headers["Linkedid"])
    assert record["call_type"] == "missed" and record["missed_by"] == ["101", "102", "103"]
    assert [leg["outcome"] for leg in record["legs"] if leg["extension"] == ext] == ["busy"]
    await page.goto(base + "/")
    await expect(page.locator(".call-back tr.missed", has_text="+7 903 555-00-00")).to_be_visible()
