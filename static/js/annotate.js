// The annotate page: keyboard shortcuts, one-round-trip submit, best/worst and ranking
// input, time on task. No inline handlers; everything hangs off data attributes.
(function () {
  "use strict";

  const workspace = document.getElementById("workspace");
  const help = document.getElementById("help");
  let shownAt = performance.now();
  let inFlight = false;

  const form = () => document.getElementById("judge-form");
  const typing = (el) =>
    el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && el.type === "text") || el.isContentEditable);

  function keyName(event) {
    const parts = [];
    if (event.ctrlKey || event.metaKey) parts.push("ctrl");
    if (event.shiftKey && event.key.length > 1) parts.push("shift");
    if (event.shiftKey && /^[a-z]$/i.test(event.key)) parts.push("shift");
    parts.push(event.key.length === 1 ? event.key.toLowerCase() : event.key.toLowerCase());
    return parts.join("+");
  }

  function press(target) {
    const input = target.matches("input") ? target : target.querySelector("input");
    if (input && input.type === "checkbox") input.checked = !input.checked;
    else if (input) input.checked = true;
    else target.click();
    if (input) {
      // Focus follows the choice (as arrow keys do), so Tab goes on to the next question.
      input.focus({ preventScroll: true });
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }
  }

  // --- best / worst and ranking -------------------------------------------------------------
  function bestWorst(f, position) {
    const best = f.querySelector(`input[name$="_best"][value="${position}"]`);
    const chosenBest = f.querySelector('input[name$="_best"]:checked');
    const chosenWorst = f.querySelector('input[name$="_worst"]:checked');
    if (!best) return;
    if (!chosenBest || chosenWorst) {
      best.checked = true;
      if (chosenWorst) chosenWorst.checked = false;
    } else if (chosenBest.value !== String(position)) {
      f.querySelector(`input[name$="_worst"][value="${position}"]`).checked = true;
    }
    markBestWorst(f);
  }

  function markBestWorst(f) {
    const best = f.querySelector('input[name$="_best"]:checked');
    const worst = f.querySelector('input[name$="_worst"]:checked');
    f.querySelectorAll(".candidate").forEach((card) => {
      card.querySelector(".mark-best").hidden = !(best && best.value === card.dataset.position);
      card.querySelector(".mark-worst").hidden = !(worst && worst.value === card.dataset.position);
    });
  }

  function syncRanking(f) {
    const list = f.querySelector("#ranking-list");
    if (!list) return;
    const order = Array.from(list.children).filter((li) => li.dataset.ranked === "1");
    f.querySelector("#ranking-input").value = order.map((li) => li.dataset.position).join(",");
    f.querySelectorAll(".candidate").forEach((card) => {
      const rank = order.findIndex((li) => li.dataset.position === card.dataset.position);
      card.querySelector(".rank-mark").textContent = rank >= 0 ? `Rank ${rank + 1}` : "";
    });
  }

  function rank(f, position) {
    const list = f.querySelector("#ranking-list");
    const li = list && list.querySelector(`li[data-position="${position}"]`);
    if (!li || li.dataset.ranked === "1") return;
    li.dataset.ranked = "1";
    const ranked = Array.from(list.children).filter((x) => x.dataset.ranked === "1" && x !== li);
    list.insertBefore(li, ranked.length ? ranked[ranked.length - 1].nextSibling : list.firstChild);
    syncRanking(f);
  }

  function setUpRanking(f) {
    const list = f.querySelector("#ranking-list");
    if (!list) return;
    let dragged = null;
    list.addEventListener("dragstart", (e) => { dragged = e.target.closest("li"); });
    list.addEventListener("dragover", (e) => e.preventDefault());
    list.addEventListener("drop", (e) => {
      e.preventDefault();
      const target = e.target.closest("li");
      if (dragged && target && dragged !== target) list.insertBefore(dragged, target);
      Array.from(list.children).forEach((li) => { li.dataset.ranked = "1"; });
      syncRanking(f);
    });
    list.addEventListener("keydown", (e) => {
      const li = e.target.closest("li");
      if (!li || !e.altKey) return;
      if (e.key === "ArrowUp" && li.previousElementSibling) list.insertBefore(li, li.previousElementSibling);
      else if (e.key === "ArrowDown" && li.nextElementSibling) list.insertBefore(li.nextElementSibling, li);
      else return;
      e.preventDefault();
      Array.from(list.children).forEach((x) => { x.dataset.ranked = "1"; });
      li.focus();
      syncRanking(f);
    });
  }

  // --- text boxes: counters and the correction draft ------------------------------------------
  function setUpText(f) {
    f.querySelectorAll(".counter").forEach((counter) => {
      const box = document.getElementById(counter.dataset.for);
      const min = parseInt(box.dataset.min || "0", 10);
      const show = () => {
        const n = box.value.trim().length;
        counter.textContent = min ? `${n} / ${min} characters` : `${n} characters`;
      };
      box.addEventListener("input", show);
      show();
    });
    f.addEventListener("change", (e) => {
      const means = e.target.dataset && e.target.dataset.means;
      const correction = f.querySelector("#correction");
      if (!correction || correction.value || !(means === "A" || means === "B")) return;
      const card = f.querySelector(`.candidate[data-position="${means === "A" ? 1 : 2}"] .response`);
      if (card) correction.value = card.innerText.trim();
    });
    if (f.dataset.mode === "best_worst") f.addEventListener("change", () => markBestWorst(f));
  }

  function setUp() {
    const f = form();
    shownAt = performance.now();
    if (!f) return;
    setUpRanking(f);
    setUpText(f);
    const first = f.querySelector("input:not([type=hidden]), textarea, select");
    if (first && workspace) first.focus({ preventScroll: true });
  }

  // --- submit: one round trip that returns the next item ---------------------------------------
  // A submit may be sent again: its URL names the assignment and the server stores one
  // judgment per assignment (a second submit answers with the one already stored). So when
  // the server cannot be reached (a web worker restarting, the connection dropped before
  // the answer came) or answers 502/503/504 (the database restarting), the page sends the
  // same answers again by itself: after 0.5 s, doubling up to 5 s, for up to two minutes.
  // Undo is never repeated by itself: sent twice, it would undo two submits.
  const RETRY_FIRST_MS = 500;
  const RETRY_MAX_MS = 5000;
  const RETRY_FOR_MS = 120000;
  const RETRYING = "The server did not answer; your answers are safe, retrying…";
  const GAVE_UP = "Could not reach the server; your answers are still here. Press Enter to retry.";
  const FAILED = "The server could not take this; your answers are still here. Press Enter to try again.";

  // One attempt: {data} to show, {retry: message} to send again, or {failed: true}.
  async function attempt(url, body) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        body,
        headers: { "X-Chosen-Fragment": "1", "X-CSRFToken": body.get("csrfmiddlewaretoken") },
        credentials: "same-origin",
      });
    } catch (error) {
      return { retry: RETRYING }; // no answer at all
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      // Cut off while reading (TypeError): no answer. Not JSON (a proxy's error page, the
      // log-in page after a redirect): nothing sending it again would change, unless 5xx.
      if (error instanceof TypeError) return { retry: RETRYING };
    }
    if ([502, 503, 504].includes(response.status)) {
      return { retry: (data && data.message) || RETRYING };
    }
    return data && typeof data.html === "string" ? { data } : { failed: true };
  }

  function say(f, text, level) {
    let note = document.getElementById("flash");
    if (!note) {
      note = document.createElement("p");
      note.id = "flash";
      f.prepend(note);
    }
    note.className = `message ${level}`;
    note.setAttribute("role", level === "error" ? "alert" : "status");
    note.textContent = text;
  }

  function show(data) {
    workspace.innerHTML = data.html;
    // What the source of a machine-made pair said, told only once the expert has answered
    // (empty for any other item, and after an undo).
    const reveal = document.getElementById("reveal");
    if (reveal) {
      reveal.textContent = data.reveal || "";
      reveal.hidden = !data.reveal;
    }
    if (data.progress) {
      const bar = document.querySelector("#progress progress");
      bar.max = data.progress.mine_target;
      bar.value = data.progress.mine;
      document.getElementById("progress-text").textContent =
        `${data.progress.mine} of ${data.progress.mine_target}`;
    }
    setUp();
  }

  const pause = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  async function send(f, url, { retry }) {
    if (inFlight) return; // a double press sends once (the server also stores one judgment)
    inFlight = true;
    f.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    const timer = f.querySelector("#time-spent");
    if (timer) timer.value = String(Math.round(performance.now() - shownAt));
    const body = new FormData(f);
    const started = performance.now();
    let wait = RETRY_FIRST_MS;
    try {
      for (;;) {
        const outcome = await attempt(url, body);
        if (outcome.data) {
          show(outcome.data);
          return;
        }
        const late = performance.now() - started + wait > RETRY_FOR_MS;
        if (!outcome.retry || !retry || late) {
          // Nothing is lost: the form stays as it was, ready to send again.
          say(f, outcome.retry ? GAVE_UP : FAILED, "error");
          f.querySelectorAll("button").forEach((b) => { b.disabled = false; });
          return;
        }
        say(f, outcome.retry, "info");
        await pause(wait);
        wait = Math.min(wait * 2, RETRY_MAX_MS);
      }
    } finally {
      inFlight = false;
    }
  }

  if (workspace) {
    workspace.addEventListener("submit", (event) => {
      const f = event.target;
      if (f.id !== "judge-form") return;
      event.preventDefault();
      // A button without its own formaction reports the page's URL: use the form's action.
      const own = event.submitter && event.submitter.hasAttribute("formaction");
      const url = own ? event.submitter.formAction : f.action;
      send(f, url, { retry: true });
    });
  }
  const undoForm = document.getElementById("undo-form");
  if (undoForm && workspace) {
    undoForm.addEventListener("submit", (event) => {
      event.preventDefault();
      send(undoForm, undoForm.action, { retry: false });
    });
  }
  const helpOpen = document.getElementById("help-open");
  if (helpOpen && help) helpOpen.addEventListener("click", () => help.showModal());

  // Another script replaced the workspace (chat.js, when a turn's replies are ready).
  document.addEventListener("chosen:workspace", setUp);

  // --- the keyboard -----------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    if (help && help.open) return; // Esc closes the dialog natively
    const f = form();
    const key = keyName(event);
    if (typing(event.target)) {
      if (key === "escape") event.target.blur();
      if (key === "ctrl+enter" && f) { event.preventDefault(); f.requestSubmit(); }
      return;
    }
    if (key === "?" || key === "shift+?") {
      if (help) { event.preventDefault(); help.showModal(); }
      return;
    }
    if (key === "ctrl+z" && undoForm) { event.preventDefault(); undoForm.requestSubmit(); return; }
    if (!f) return;
    if (key === "enter" && !event.target.matches("button, a, summary")) {
      event.preventDefault();
      f.requestSubmit(f.querySelector("#submit-button") || undefined);
      return;
    }
    if (key === "shift+s") {
      const skip = f.querySelector("#skip-button");
      if (skip) { event.preventDefault(); f.requestSubmit(skip); }
      return;
    }
    if (f.dataset.mode !== "pairwise" && /^[1-9]$/.test(key) && f.querySelector(`.candidate[data-position="${key}"]`)) {
      event.preventDefault();
      if (f.dataset.mode === "best_worst") bestWorst(f, key);
      else rank(f, key);
      return;
    }
    if (f.dataset.mode === "ranking" && key === "backspace") {
      f.querySelectorAll("#ranking-list li").forEach((li) => { delete li.dataset.ranked; });
      syncRanking(f);
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = Array.from(f.querySelectorAll("[data-hotkey]")).find((el) => el.dataset.hotkey === key);
    if (target) { event.preventDefault(); press(target); }
  });

  setUp();
})();
