// Panel-wide behaviour: click-to-call buttons (any element with data-number) and notices.
// No inline scripts (the CSP forbids them); the CSRF token comes from a meta tag.
"use strict";
window.clinicPanel = (function () {
  const csrf = (document.querySelector("meta[name=csrf-token]") || {}).content || "";
  function notice(text, level) {
    const box = document.getElementById("notices");
    if (!box) return;
    const header = document.querySelector("header");  // under the header, never over the title's row
    if (header) box.style.top = Math.ceil(header.getBoundingClientRect().bottom) + 6 + "px";
    const n = document.createElement("div");
    n.className = "notice " + (level || "info");
    n.textContent = text;
    const close = document.createElement("button");
    close.className = "close";
    close.textContent = "×";
    close.addEventListener("click", () => n.remove());
    n.append(close);
    box.append(n);
    setTimeout(() => n.remove(), level === "error" ? 30000 : 15000);
  }
  async function post(url, body) {
    const resp = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    let data = {};
    try { data = await resp.json(); } catch (e) { data = {}; }
    return { ok: resp.ok, status: resp.status, data };
  }
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-number]");
    if (!button || button.tagName !== "BUTTON") return;
    event.preventDefault();
    button.disabled = true;
    try {
      const r = await post("/dial", { number: button.dataset.number });
      if (r.ok) notice("Звоним: сначала зазвонит ваш телефон " + r.data.extension + ", затем пациент", "info");
      else notice(r.data.error || "Не получилось позвонить", "error");
    } catch (e) {
      notice("Не получилось позвонить: нет связи с сервером", "error");
    } finally {
      setTimeout(() => { button.disabled = false; }, 2000);
    }
  });
  // the booking form: copy the call's comment into the appointment's comment (seed 001)
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-copy-to]");
    if (!button) return;
    event.preventDefault();
    const target = document.querySelector(button.dataset.copyTo);
    if (!target) return;
    const text = button.dataset.text || "";
    target.value = target.value.trim() ? target.value.trim() + "\n" + text : text;
    target.focus();
  });
  // Live figures (the home page's counters and «Перезвонить»): the block marked data-live is
  // fetched again when the live channel says a call ended (and every minute, for calls that
  // never rang this phone); only that block is replaced, so nothing typed elsewhere is lost.
  const live = document.querySelector("[data-live]");
  if (live) {
    let timer = null;
    async function refresh() {
      timer = null;
      try {
        const resp = await fetch(location.href, { credentials: "same-origin", headers: { "X-Clinic-Background": "1" } });
        if (!resp.ok) return;
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        const fresh = doc.querySelector("[data-live]");
        if (fresh) live.replaceChildren(...fresh.childNodes);
      } catch (e) { /* offline for a moment: the next event or minute tries again */ }
    }
    const soon = () => { if (!timer) timer = setTimeout(refresh, 700); };
    document.addEventListener("clinic:calls-changed", soon);
    setInterval(soon, 60000);
  }
  // presence: someone at this PC (a key, a click, the mouse) keeps the session; an open tab on an
  // unattended PC does not (its refreshes and the live stream say X-Clinic-Background / nothing)
  let lastInput = 0, lastSaid = Date.now();
  for (const kind of ["keydown", "pointerdown", "pointermove", "wheel", "touchstart"]) {
    document.addEventListener(kind, () => { lastInput = Date.now(); }, { passive: true, capture: true });
  }
  if (csrf) {
    setInterval(async () => {
      if (lastInput <= lastSaid) return;
      lastSaid = Date.now();
      try {
        const r = await fetch("/presence", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
        if (r.status === 401) location.href = "/login";
      } catch (e) { /* offline for a moment */ }
    }, 60000);
  }
  // Seed 004's «Детализировать»: every обращение of the report opened at once (the button, or a
  // right click on a row → «Детализировать»); a double click opens or closes one row
  const detailed = document.querySelector("table[data-detail]");
  if (detailed) {
    const button = document.querySelector("button.detail-all");
    const rows = () => detailed.querySelectorAll("tbody.appeal details:not(.channel-rules)");
    const setAll = (open) => {
      for (const d of rows()) d.open = open;
      if (button) button.textContent = open ? "Свернуть" : "Детализировать";
    };
    const allOpen = () => [...rows()].every((d) => d.open);
    if (button) button.addEventListener("click", () => setAll(!allOpen()));
    let menu = null;
    const closeMenu = () => { if (menu) { menu.remove(); menu = null; } };
    detailed.addEventListener("contextmenu", (event) => {
      if (!event.target.closest("tbody.appeal tr") || event.target.closest("a, button, audio, input")) return;
      event.preventDefault();
      closeMenu();
      menu = document.createElement("div");
      menu.className = "context-menu";
      menu.setAttribute("role", "menu");
      const item = document.createElement("button");
      item.type = "button";
      item.setAttribute("role", "menuitem");
      item.textContent = allOpen() ? "Свернуть" : "Детализировать";
      item.addEventListener("click", () => { setAll(!allOpen()); closeMenu(); });
      menu.append(item);
      menu.style.left = event.pageX + "px";
      menu.style.top = event.pageY + "px";
      document.body.append(menu);
      item.focus();
    });
    document.addEventListener("click", (event) => { if (menu && !menu.contains(event.target)) closeMenu(); });
    document.addEventListener("keydown", (event) => { if (event.key === "Escape") closeMenu(); });
    detailed.addEventListener("dblclick", (event) => {
      const row = event.target.closest("tbody.appeal tr");
      if (!row || event.target.closest("a, button, audio, input, summary")) return;
      const d = row.querySelector("details:not(.channel-rules)");
      if (d) d.open = !d.open;
    });
  }
  // tabs by anchor (the settings page): mark the one shown
  const tabs = document.querySelectorAll("nav.tabs a[data-tab]");
  if (tabs.length) {
    const open = document.querySelector(".settings-sections > section.open");
    const mark = () => {
      const shown = (location.hash || "").slice(1) || (open && open.id) || "";
      for (const t of tabs) t.setAttribute("aria-current", String(t.dataset.tab === shown));
    };
    window.addEventListener("hashchange", mark);
    mark();
  }
  return { notice, post };
})();
