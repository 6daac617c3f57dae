// «Настройки → Импорт»: the upload sent with the CSRF header (the form's own post is capped in
// size) and its progress shown; a running import's progress polled until it ends.
(() => {
  const upload = document.getElementById("import-upload");
  if (upload) {
    upload.addEventListener("submit", (e) => {
      e.preventDefault();
      const state = document.getElementById("upload-state");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", upload.action);
      xhr.setRequestHeader("X-CSRF-Token", document.querySelector("meta[name=csrf-token]").content);
      xhr.upload.onprogress = (p) => {
        if (p.lengthComputable) state.textContent = "Загрузка: " + Math.round((100 * p.loaded) / p.total) + "%";
      };
      xhr.onload = () => {
        if (xhr.status < 400 && /\/settings\/import\/\d+$/.test(xhr.responseURL)) {
          location.href = xhr.responseURL;
          return;
        }
        const doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
        const error = doc.querySelector(".error");
        state.textContent = error ? error.textContent : "Не удалось загрузить файл (" + xhr.status + ")";
        state.classList.add("error");
      };
      xhr.onerror = () => { state.textContent = "Не удалось отправить файл"; };
      xhr.send(new FormData(upload));
    });
  }
  const progress = document.getElementById("import-progress");
  if (progress) {
    (async () => {
      for (;;) {
        await new Promise((r) => setTimeout(r, 1000));
        let s;
        try {
          const r = await fetch("/settings/import/" + progress.dataset.run + ".json",
                                { credentials: "same-origin", headers: { "X-Clinic-Background": "1" } });
          if (!r.ok) continue;
          s = await r.json();
        } catch (err) { continue; }
        progress.value = s.rows_done;
        document.getElementById("import-rows").textContent = s.rows_done + " из ~" + s.rows_total + " строк";
        if (s.state !== "running") { location.reload(); return; }
      }
    })();
  }
})();
