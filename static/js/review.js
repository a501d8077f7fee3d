// The lead's review page: 1..N pick a candidate in the decision form (best, then worst, for
// best/worst items), t tie, b both bad, n the note box, ] the next open disagreement,
// Ctrl+Enter saves the form the focus is in. Keys are ignored while typing.
(function () {
  "use strict";
  const decision = document.getElementById("decision-form");
  if (!decision) return;
  const typing = (el) =>
    el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && /text|number/.test(el.type)) || el.tagName === "SELECT");

  function check(input) {
    input.checked = true;
    input.focus({ preventScroll: true });
  }

  function pick(key) {
    const exact = decision.querySelector(`input[data-key="${key}"]`);
    const best = decision.querySelector('input[name="best"]:checked');
    const worst = decision.querySelectorAll('input[name="worst"]');
    if (worst.length && /^[0-9]$/.test(key)) {
      // best / worst: the first key marks the best, the next a different one as worst
      const bestInput = decision.querySelector(`input[name="best"][data-key="${key}"]`);
      if (!bestInput) return;
      const index = Array.from(decision.querySelectorAll('input[name="best"]')).indexOf(bestInput);
      const worstChecked = decision.querySelector('input[name="worst"]:checked');
      if (best && !worstChecked && best !== bestInput) check(worst[index]);
      else {
        check(bestInput);
        if (worstChecked) worstChecked.checked = false;
      }
      return;
    }
    if (exact) check(exact);
  }

  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      const form = document.activeElement && document.activeElement.closest("form");
      if (form) {
        event.preventDefault();
        // the decision form's main button: save and go on to the next open disagreement
        form.requestSubmit(form.querySelector("button.primary") || undefined);
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(document.activeElement)) return;
    const key = event.key.toLowerCase();
    if (key === "n") {
      event.preventDefault();
      document.getElementById("note-text").focus();
    } else if (key === "]") {
      const next = document.getElementById("next-open");
      if (next) next.click();
    } else if (/^[0-9tb]$/.test(key)) {
      pick(key);
    }
  });
})();
