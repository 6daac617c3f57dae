// Live call cards (a dock on the right of every page, newest on top, collapsible; the page
// makes room for it so it never covers the page's controls). Data arrives over SSE from /live.
// Everything is built with textContent: names and numbers are never parsed as HTML.
"use strict";
(function () {
  const box = document.getElementById("cards");
  const notices = document.getElementById("notices");
  if (!box) return;
  const cards = new Map();   // linkedid -> card data
  let waiting = {};          // queue -> callers waiting
  let queues = [];           // the queues this phone serves ([]: not known, count them all)
  const STATUS = {
    ringing: "Входящий звонок", talking: "Разговор", on_hold: "На удержании",
    dialing: "Исходящий звонок", ended: "Звонок завершён",
  };
  const OUTCOME = { missed: "Пропущенный звонок", completed: "Звонок завершён", unanswered: "Не дозвонились" };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function link(href, text, cls) {
    const a = el("a", cls, text);
    a.href = href;
    return a;
  }
  // +79161234567 -> +7 916 123-45-67, as the panel writes numbers (web/formatting.py)
  function fmtPhone(n) {
    const m = /^\+7(\d{3})(\d{3})(\d{2})(\d{2})$/.exec(n || "");
    return m ? "+7 " + m[1] + " " + m[2] + "-" + m[3] + "-" + m[4] : (n || "");
  }
  let collapsed = sessionStorage.getItem("cards-collapsed") === "1";
  function render() {
    box.replaceChildren();
    const list = [...cards.values()].sort((a, b) => (b.since || 0) - (a.since || 0));
    document.body.classList.toggle("with-cards", list.length > 0 && !collapsed);
    box.hidden = list.length === 0;
    if (!list.length) return;
    // below the header, however many lines its sections take at this width
    const header = document.querySelector("header");
    if (header) box.style.top = Math.ceil(header.getBoundingClientRect().bottom) + 8 + "px";
    const head = el("button", "dock-head", (collapsed ? "▸ " : "▾ ") + "Звонки: " + list.length);
    head.type = "button";
    head.setAttribute("aria-expanded", String(!collapsed));
    head.title = collapsed ? "Показать карточки звонков" : "Свернуть карточки звонков";
    head.addEventListener("click", () => {
      collapsed = !collapsed;
      sessionStorage.setItem("cards-collapsed", collapsed ? "1" : "0");
      render();
    });
    box.append(head);
    if (collapsed) return;
    if (list.filter((c) => c.status === "ringing").length > 1) {
      const pick = el("div", "card pick");
      pick.append(el("div", "title", "Сейчас звонят:"));
      for (const c of list.filter((x) => x.status === "ringing")) {
        // the administrator picks, by the last digits, the call being answered
        const row = link("/comment?call=" + encodeURIComponent(c.linkedid),
                         new Date(c.since * 1000).toLocaleTimeString("ru-RU") + "  " + fmtPhone(c.phone), "row");
        pick.append(row);
      }
      box.append(pick);
    }
    const mine = Object.entries(waiting).filter(([q]) => !queues.length || queues.includes(q));
    const others = mine.reduce((a, [, n]) => a + n, 0) - list.filter((c) => c.status === "ringing").length;
    for (const c of list) box.append(card(c, others));
  }
  function card(c, others) {
    const status = c.status === "ended" ? (OUTCOME[c.outcome] || STATUS.ended) : STATUS[c.status];
    const d = el("div", "card " + (c.direction === "outgoing" ? "outgoing " : "") + c.status + " " + (c.outcome || ""));
    d.dataset.linkedid = c.linkedid;
    const close = el("button", "close", "×");
    close.title = "Закрыть";
    close.addEventListener("click", () => { cards.delete(c.linkedid); render(); });
    d.append(close, el("div", "status", status));
    const answered = c.status === "talking" || c.status === "on_hold";
    if (c.kind === "patient" && c.patients.length === 1) {
      const p = c.patients[0];
      d.append(link("/patients/" + p.id, p.full_name, "name"));
      if (p.birth_date) d.append(el("div", "born", "Дата рождения: " + p.birth_date.split("-").reverse().join(".")));
    } else if (c.kind === "guardian") {
      // seed 000: before the answer only the number; after it, the guardian with the wards
      if (answered) {
        d.append(el("div", "name", "Опекун: " + (c.guardian_name || "без имени")));
        d.append(el("div", "hint", "Пациенты этого опекуна:"));
        for (const p of c.patients) {
          const row = el("div", "ward");
          row.append(link("/patients/" + p.id, p.full_name), " ",
                     link("/booking?patient=" + p.id + "&call=" + encodeURIComponent(c.linkedid) + "&phone=" + encodeURIComponent(c.phone),
                          "Назначить приём (" + p.full_name + ")", "button"));
          d.append(row);
        }
      }
    } else if (c.kind === "patients") {
      d.append(el("div", "name", answered ? "Неизвестный пациент" : c.display));
      if (answered) {
        d.append(el("div", "hint", "Выберите пациента:"));
        for (const p of c.patients) {
          const row = el("div", "ward");
          row.append(link("/patients/" + p.id, p.full_name), " ",
                     link("/booking?patient=" + p.id + "&call=" + encodeURIComponent(c.linkedid), "Назначить приём (" + p.full_name + ")", "button"));
          d.append(row);
        }
      }
    } else if (c.kind === "employee" || c.kind === "contractor") {
      d.append(el("div", "name", c.display));
    }
    d.append(el("div", "phone", fmtPhone(c.phone)));
    if (c.ad_channel) d.append(el("div", "channel", "Канал: " + c.ad_channel));
    if (c.script && c.status !== "ended") d.append(el("div", "script", c.script));
    if (answered && (c.kind === "unknown" || c.kind === "patient")) {
      const actions = el("div", "actions");
      if (c.kind === "unknown") actions.append(link("/patients/new?phone=" + encodeURIComponent(c.phone), "Добавить пациента", "button"));
      const pid = c.kind === "patient" ? c.patients[0].id : "";
      actions.append(link("/booking?call=" + encodeURIComponent(c.linkedid) + (pid ? "&patient=" + pid : "") + "&phone=" + encodeURIComponent(c.phone), "Назначить приём", "button"));
      d.append(actions);
    }
    // the phone in the browser (#34): a ringing call is answered from its card
    if (c.status === "ringing" && window.clinicPhone && window.clinicPhone.ringing()) {
      const actions = el("div", "actions");
      const answer = el("button", "primary answer", "Ответить");
      answer.type = "button";
      answer.addEventListener("click", () => window.clinicPhone.answer());
      const decline = el("button", "decline", "Отклонить");
      decline.type = "button";
      decline.addEventListener("click", () => window.clinicPhone.decline());
      actions.append(answer, decline);
      d.append(actions);
    }
    if (c.status !== "ringing" && c.kind !== "employee" && c.kind !== "contractor") {
      d.append(link("/comment?call=" + encodeURIComponent(c.linkedid), "Комментарий", "comment-link"));
    }
    if (others > 0 && c.status !== "ended") d.append(el("div", "more", "Ещё " + others + " на линии"));
    return d;
  }
  function apply(msg) {
    if (msg.type === "snapshot") {
      cards.clear();
      for (const c of msg.cards) cards.set(c.linkedid, c);
      waiting = msg.waiting || {};
      queues = msg.queues || [];
    } else if (msg.type === "card") {
      const c = msg.card;
      // pages with live figures (the home page) refresh them when a call ends
      if (c.status === "ended") document.dispatchEvent(new CustomEvent("clinic:calls-changed"));
      if (c.status === "ended" && (c.outcome === "answered_elsewhere" || c.outcome === "no_answer")) {
        cards.delete(c.linkedid);
      } else {
        cards.set(c.linkedid, c);
        if (c.status === "ended") {
          if (c.outcome === "completed") tagPrompt(c);
          setTimeout(() => { if (cards.get(c.linkedid) === c) { cards.delete(c.linkedid); render(); } }, 10000);
        }
      }
    } else if (msg.type === "waiting") {
      if ((waiting[msg.queue] || 0) > msg.count) document.dispatchEvent(new CustomEvent("clinic:calls-changed"));
      waiting[msg.queue] = msg.count;
    } else if (msg.type === "notice") {
      if (window.clinicPanel) window.clinicPanel.notice(msg.text, msg.level);
      else notices.append(el("div", "notice", msg.text));
    }
    render();
  }
  // The post-call tag pop-up (seed 000): at least one tag to save; closing it unsaved leaves
  // a dash in the history. Tags are never edited after saving.
  const prompted = new Set();
  async function tagPrompt(c) {
    const panel = window.clinicPanel;
    const dialog = document.getElementById("tag-dialog");
    if (!panel || !dialog || prompted.has(c.linkedid)) return;
    prompted.add(c.linkedid);
    const r = await panel.post("/tags/prompt", { call: c.linkedid, phone: c.phone, since: c.since });
    if (!r.ok || !r.data.show) return;
    dialog.replaceChildren();
    dialog.append(el("h3", "", "Метки звонка " + fmtPhone(c.phone)));
    const chosen = new Set();
    for (const g of r.data.groups) {
      const box = el("fieldset", "tag-group");
      box.append(el("legend", "", g.name));
      for (const t of g.tags) {
        const label = el("label", "tag");
        const input = document.createElement("input");
        input.type = "checkbox";
        input.value = t.id;
        input.addEventListener("change", () => { input.checked ? chosen.add(t.id) : chosen.delete(t.id); });
        label.append(input, " " + t.name);
        box.append(label);
      }
      dialog.append(box);
    }
    const other = document.createElement("input");
    other.name = "other";
    other.maxLength = 200;
    other.placeholder = r.data.other;
    const otherLabel = el("label", "tag-other", r.data.other + ": ");
    otherLabel.append(other);
    const error = el("div", "error");
    // Seed 000: the window closes only when at least one tag is chosen and saved; a tab closed
    // without saving leaves the dash in the history (the server marked the prompt as shown).
    const save = el("button", "primary", "Сохранить");
    save.type = "button";
    save.addEventListener("click", async () => {
      const s = await panel.post("/tags/save", { call: c.linkedid, tags: [...chosen], other: other.value });
      if (s.ok) { dialog.hidden = true; dialog.replaceChildren(); }
      else error.textContent = s.data.error || "Не удалось сохранить";
    });
    const hint = el("p", "hint", "Окно закроется, когда вы выберете хотя бы одну метку и нажмёте «Сохранить».");
    dialog.append(otherLabel, hint, error, save);
    dialog.hidden = false;
  }
  document.addEventListener("clinic:phone-changed", () => render());
  const source = new EventSource("/live");
  source.onmessage = (e) => apply(JSON.parse(e.data));
})();
