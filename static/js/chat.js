// The chat page: sending a message, the replies appearing as the model writes them, stop.
// Judging uses the annotate page's script (annotate.js) on the same #workspace.
//
// The replies come by polling the turn's event stream with a cursor while a turn is
// generating (never otherwise): each poll is a short request, so waiting experts hold no
// web thread (see chat/views.py). With the page's key to the stream (data-events-key) the
// server answers a poll from Redis alone, about 1 ms of its CPU (chat/middleware.py). Every
// POLL_MS until the first words appear, so the expert sees the model start at once (the
// wait between polls is most of the delay to the first token); then every STREAM_POLL_MS,
// five updates a second of the words written meanwhile, which halves the polls of 50
// experts reading their replies (bench/chat_load.py). A turn still queued after
// QUEUED_FAST_MS (every chat thread of the worker busy) is asked about every
// QUEUED_POLL_MS only: it may wait a while. When the turn ends the workspace is fetched
// again (the fragment, not the whole page): the judging form, or the reason it failed
// with a Retry button.
(function () {
  "use strict";

  const POLL_MS = 50;
  const STREAM_POLL_MS = 200;
  const QUEUED_FAST_MS = 1000;
  const QUEUED_POLL_MS = 500;
  const RETRY_MAX_MS = 5000;
  const workspace = document.getElementById("workspace");
  if (!workspace) return;
  let polling = null;

  function csrf(root) {
    const input = root.querySelector("input[name=csrfmiddlewaretoken]") || document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function status(text) {
    const line = document.getElementById("stream-status");
    if (line) line.textContent = text;
  }

  function apply(event) {
    if (event.kind === "token") {
      const box = document.querySelector(`#reply-${event.reply} .stream-text`);
      if (box) box.textContent += event.text;
      status("Writing…");
    } else if (event.kind === "reply-end") {
      const box = document.getElementById(`reply-${event.reply}`);
      if (box) {
        box.classList.remove("streaming");
        if (event.error) box.classList.add("failed");
      }
    }
  }

  function poll(stream) {
    const url = stream.dataset.eventsUrl;
    const key = stream.dataset.eventsKey || "";
    let after = "0";
    let wait = POLL_MS;
    let stopped = false;
    let writing = false;
    const since = Date.now();
    async function tick() {
      if (stopped) return;
      let data = null;
      try {
        const response = await fetch(`${url}?after=${encodeURIComponent(after)}&key=${encodeURIComponent(key)}`, { credentials: "same-origin" });
        if (response.ok) data = await response.json();
      } catch (error) {
        data = null;
      }
      if (!data) {
        status("The server did not answer; still trying…");
        wait = Math.min(wait * 2, RETRY_MAX_MS);
      } else {
        const queued = data.status === "queued" && !data.events.length;
        if (queued) status("Waiting for the model…");
        let ended = false;
        for (const event of data.events) {
          after = event.id;
          apply(event);
          if (event.kind === "token") writing = true;
          if (event.kind === "end") ended = true;
        }
        if (writing) wait = STREAM_POLL_MS;
        else if (queued && Date.now() - since > QUEUED_FAST_MS) wait = QUEUED_POLL_MS;
        else wait = POLL_MS;
        if (ended || (data.finished && !data.events.length)) {
          stopped = true;
          status(data.message || "Done.");
          nextState();
          return;
        }
      }
      setTimeout(tick, wait);
    }
    tick();
    return { stop() { stopped = true; } };
  }

  // The turn ended: the conversation's next state (the replies to judge, or why the turn
  // failed with a Retry button) replaces the workspace, as after a message or a judgment,
  // and annotate.js sets its form up ("chosen:workspace"). If it cannot be had, the page
  // is loaded again.
  async function nextState() {
    let data = null;
    try {
      const response = await fetch(window.location.pathname, {
        headers: { "X-Chosen-Fragment": "1" },
        credentials: "same-origin",
      });
      if (response.ok) data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!data || typeof data.html !== "string") {
      window.location.reload();
      return;
    }
    replace(data.html);
  }

  // The workspace replaced by the server's next state; annotate.js sets up a judging form
  // in it ("chosen:workspace"), this script a stream or the message box.
  function replace(html) {
    workspace.innerHTML = html;
    polling = null;
    document.dispatchEvent(new CustomEvent("chosen:workspace"));
    setUp();
  }

  function setUp() {
    const stream = document.getElementById("stream");
    if (stream && !polling) polling = poll(stream);
    const text = document.getElementById("turn-text");
    if (text) text.focus({ preventScroll: true });
  }

  // Sending a message: one request; the answer is the page with the replies to come.
  workspace.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.id !== "turn-form") return;
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button.disabled) return;
    button.disabled = true;
    let data = null;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-Chosen-Fragment": "1", "X-CSRFToken": csrf(form) },
        credentials: "same-origin",
      });
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!data || typeof data.html !== "string") {
      button.disabled = false;
      let note = document.getElementById("flash");
      if (!note) {
        note = document.createElement("p");
        note.id = "flash";
        form.prepend(note);
      }
      note.className = "message error";
      note.setAttribute("role", "alert");
      note.textContent = "Could not reach the server; your message is still here. Try again.";
      return;
    }
    replace(data.html);
  });

  workspace.addEventListener("click", (event) => {
    if (event.target.id !== "stop-button") return;
    const stream = document.getElementById("stream");
    event.target.disabled = true;
    status("Stopping…");
    fetch(stream.dataset.stopUrl, {
      method: "POST",
      headers: { "X-CSRFToken": csrf(stream) },
      credentials: "same-origin",
    });
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.id === "turn-text" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      event.target.form.requestSubmit();
    }
  });

  setUp();
})();
