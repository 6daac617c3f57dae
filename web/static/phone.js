// The phone in the browser (issue #34): JsSIP (from npm, web/static/vendor) registered as this
// user's own endpoint over the panel's /phone/ws relay. One tab of a user holds the
// registration (Web Locks); the others show where the phone is. The password comes from
// /phone/account and stays in this page's memory.
(() => {
  const box = document.getElementById("browser-phone");
  if (!box || !window.JsSIP) return;
  const $ = (id) => document.getElementById(id);
  const stateEl = $("bp-state"), callEl = $("bp-call"), audio = $("bp-audio");
  const micSelect = $("bp-mic"), meter = $("bp-level"), number = $("bp-number");
  let ua = null, session = null, account = null, muted = false, held = false, ringer = null;

  function show(text, cls) { stateEl.textContent = text; stateEl.className = "bp-state " + (cls || ""); }
  function changed() {
    const s = session;
    const ringing = !!(s && s.direction === "incoming" && !s.isEstablished() && !s.isEnded());
    box.dataset.call = !s ? "idle" : ringing ? "ringing" : s.isEstablished() ? (held ? "held" : "talking") : "calling";
    $("bp-answer").hidden = $("bp-decline").hidden = !ringing;
    for (const id of ["bp-hangup", "bp-mute", "bp-hold", "bp-transfer-box", "bp-keys"]) $(id).hidden = !s || ringing;
    $("bp-mute").textContent = muted ? "Включить микрофон" : "Выключить микрофон";
    $("bp-hold").textContent = held ? "Снять с удержания" : "Удержание";
    if (ringing) startRinging(); else stopRinging();
    document.dispatchEvent(new CustomEvent("clinic:phone-changed"));
  }

  // ---- ringing sound: a 425 Hz tone, 1 s on, 3 s off (the Russian ring-back cadence). A
  // browser lets a page make sound only after a click on it: the first click anywhere unmutes.
  const sound = new AudioContext();
  const unmute = () => { if (sound.state === "suspended") sound.resume(); };
  document.addEventListener("pointerdown", unmute);
  document.addEventListener("keydown", unmute);
  function startRinging() {
    if (ringer) return;
    const beep = () => {
      const o = sound.createOscillator(), g = sound.createGain();
      g.gain.value = 0.2; o.frequency.value = 425; o.connect(g).connect(sound.destination);
      o.start(); o.stop(sound.currentTime + 1);
    };
    beep();
    ringer = setInterval(beep, 4000);
    if (sound.state === "suspended") callEl.textContent += " (звук звонка включится после щелчка по странице)";
  }
  function stopRinging() {
    if (ringer) clearInterval(ringer);
    ringer = null;
  }

  // ---- microphone: the chosen device, its level on a meter
  let micStream = null, levelTimer = null, micSource = null;
  const analyser = sound.createAnalyser();
  async function openMic() {
    if (micStream) micStream.getTracks().forEach((t) => t.stop());
    if (micSource) micSource.disconnect();
    const id = micSelect.value;
    micStream = await navigator.mediaDevices.getUserMedia({ audio: id ? { deviceId: { exact: id } } : true });
    micSource = sound.createMediaStreamSource(micStream);
    micSource.connect(analyser);
    const data = new Uint8Array(analyser.fftSize);
    clearInterval(levelTimer);
    levelTimer = setInterval(() => {
      analyser.getByteTimeDomainData(data);
      let peak = 0;
      for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
      meter.value = peak / 128;
    }, 100);
    const devices = await navigator.mediaDevices.enumerateDevices();
    const chosen = micSelect.value;
    micSelect.replaceChildren();
    for (const d of devices.filter((x) => x.kind === "audioinput")) {
      const o = document.createElement("option");
      o.value = d.deviceId; o.textContent = d.label || "Микрофон";
      micSelect.append(o);
    }
    if (chosen) micSelect.value = chosen;
  }
  micSelect.addEventListener("change", () => openMic().catch((e) => show("Микрофон недоступен: " + e.message, "bad")));

  function mediaOptions() {
    const id = micSelect.value;
    return {
      mediaConstraints: { audio: id ? { deviceId: { exact: id } } : true, video: false },
      pcConfig: { iceServers: [] }, // Asterisk is on the clinic's network: no STUN to wait for
      rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false },
    };
  }

  function attach(s) {
    session = s; muted = false; held = false;
    const who = s.remote_identity;
    callEl.textContent = (s.direction === "incoming" ? "Входящий: " : "Исходящий: ")
      + (who.display_name ? who.display_name + " " : "") + (who.uri.user || "");
    // ICE gathering is capped at 1 s: without it the answer waits 10-40 s (JsSIP issues 804, 432)
    let capped = false;
    s.on("icecandidate", (e) => { if (!capped) { capped = true; setTimeout(e.ready, 1000); } });
    s.on("peerconnection", (e) => e.peerconnection.addEventListener("track", (ev) => { audio.srcObject = ev.streams[0]; }));
    if (s.connection) s.connection.addEventListener("track", (ev) => { audio.srcObject = ev.streams[0]; });
    s.on("confirmed", changed);
    s.on("hold", () => { held = true; changed(); });
    s.on("unhold", () => { held = false; changed(); });
    const end = (text) => () => { if (session === s) { session = null; callEl.textContent = text; } changed(); };
    s.on("ended", end("Звонок завершён"));
    s.on("failed", end("Звонок не состоялся"));
    changed();
  }

  async function fetchAccount() {
    const r = await fetch("/phone/account", { credentials: "same-origin", cache: "no-store" });
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
    return data;
  }

  async function start() {
    account = await fetchAccount();
    box.dataset.extension = account.extension;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + account.ws_path;
    ua = new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface(url)], uri: "sip:" + account.extension + "@" + account.domain,
      password: account.password, register: true, register_expires: 120, session_timers: false,
      connection_recovery_min_interval: 1, connection_recovery_max_interval: 4,
      user_agent: "clinic-pbx browser phone",
    });
    ua.on("connecting", () => show("Телефон " + account.extension + ": подключение…", "wait"));
    let drops = 0;
    ua.on("connected", () => { drops = 0; });
    ua.on("disconnected", async () => {
      show("Телефон " + account.extension + ": нет связи, переподключение…", "bad");
      // refused again and again: is the browser phone still this shift's (another tab chose a
      // desk phone, or the session ended)? Then stop instead of knocking every few seconds
      if (++drops % 5 === 0) {
        try { await fetchAccount(); } catch (err) { ua.stop(); show("Телефон в браузере: " + err.message, "bad"); }
      }
    });
    ua.on("registered", () => show("Телефон " + account.extension + ": на связи", "ok"));
    ua.on("unregistered", () => show("Телефон " + account.extension + ": не зарегистрирован", "bad"));
    ua.on("registrationFailed", async (e) => {
      show("Телефон " + account.extension + ": регистрация не удалась (" + e.cause + ")", "bad");
      if (e.cause === JsSIP.C.causes.AUTHENTICATION_ERROR || e.cause === JsSIP.C.causes.REJECTED) {
        // a new password (a new login chose the browser phone): take it, or stop here
        try { const fresh = await fetchAccount(); if (fresh.password !== account.password) { ua.stop(); start(); } }
        catch (err) { show("Телефон в браузере: " + err.message, "bad"); ua.stop(); }
      }
    });
    ua.on("newRTCSession", (e) => {
      if (session) { e.session.terminate({ status_code: 486 }); return; } // one call at a time
      attach(e.session);
    });
    ua.start();
  }

  $("bp-answer").addEventListener("click", () => window.clinicPhone.answer());
  $("bp-decline").addEventListener("click", () => window.clinicPhone.decline());
  $("bp-hangup").addEventListener("click", () => session && session.terminate());
  $("bp-mute").addEventListener("click", () => {
    if (!session) return;
    muted ? session.unmute({ audio: true }) : session.mute({ audio: true });
    muted = !muted; changed();
  });
  $("bp-hold").addEventListener("click", () => { if (session) held ? session.unhold() : session.hold(); });
  $("bp-transfer").addEventListener("click", () => {
    const to = $("bp-transfer-to").value.replace(/[^0-9]/g, "");
    if (!session || !to) return;
    const s = session;
    // a blind transfer: once Asterisk reports the new call going (NOTIFY 2xx), this leg ends
    s.refer("sip:" + to + "@" + account.domain, {
      eventHandlers: {
        accepted: () => { if (!s.isEnded()) s.terminate(); },
        failed: () => { callEl.textContent = "Перевод на " + to + " не удался"; },
      },
    });
  });
  for (const key of box.querySelectorAll("#bp-keys button")) {
    key.addEventListener("click", () => session && session.sendDTMF(key.textContent, { transportType: "RFC2833" }));
  }
  $("bp-dial").addEventListener("click", () => {
    const to = number.value.replace(/[^0-9+]/g, "");
    if (ua && to && !session) ua.call("sip:" + to + "@" + account.domain, mediaOptions());
  });

  // The panel is pages, and leaving this one would end the call it holds: while a call is on,
  // the panel's links and forms open in a new tab (which leaves the registration to this one,
  // see the lock below), and closing or reloading this tab asks first.
  const newTabDuringCall = (el) => {
    if (!session || !el || el.target) return;
    el.target = "_blank";
    setTimeout(() => el.removeAttribute("target"), 0);
  };
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a[href]");
    if (a && a.origin === location.origin && !box.contains(a)) newTabDuringCall(a);
  }, true);
  document.addEventListener("submit", (e) => { if (!box.contains(e.target)) newTabDuringCall(e.target); }, true);
  window.addEventListener("beforeunload", (e) => { if (session) { e.preventDefault(); e.returnValue = ""; } });

  window.clinicPhone = {
    ringing: () => box.dataset.call === "ringing",
    answer: () => { if (session && box.dataset.call === "ringing") session.answer(mediaOptions()); },
    decline: () => { if (session && box.dataset.call === "ringing") session.terminate({ status_code: 486 }); },
  };

  function run() {
    openMic().catch((e) => show("Микрофон недоступен: " + e.message, "bad"));
    return start().catch((e) => show("Телефон в браузере: " + e.message, "bad"));
  }
  // one registration per user: the first tab holds the lock; another waits and takes over
  // when that tab closes
  if (navigator.locks) {
    show("Телефон в браузере открыт в другой вкладке", "wait");
    navigator.locks.request("clinic-pbx-browser-phone", async () => {
      await run();
      await new Promise(() => {}); // held for this tab's life
    });
  } else {
    run();
  }
  changed();
})();
