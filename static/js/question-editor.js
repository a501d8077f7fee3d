// The project form's question editor: questions and their labels / options as rows of real
// fields, over the JSON textarea that stays the one source of truth (read on load, written
// on every change; "Edit as JSON" shows it). Every change asks the server for a preview of
// the annotate page and for the schema's problems, shown beside the fields they concern.
// No inline handlers or styles: the page's CSP allows neither.
(function () {
  "use strict";

  const root = document.getElementById("question-editor");
  if (!root) return;
  const textarea = document.getElementById(root.dataset.textarea);
  const mount = document.getElementById("qe-structured");
  const jsonBox = document.getElementById("qe-json");
  const toggle = document.getElementById("qe-json-toggle");
  const preview = document.getElementById("qe-preview");
  const previewStatus = document.getElementById("qe-preview-status");
  const layoutCss = document.getElementById("qe-layout-css");
  const field = (name) => document.getElementById(`id_${name}`);

  const KINDS = [
    ["preference", "Preference (the comparison)"],
    ["choice", "Choice (one option)"],
    ["multichoice", "Multichoice (several options)"],
    ["rating", "Rating (a score per response)"],
    ["text", "Text (free text)"],
    ["correction", "Correction (edit the preferred response)"],
  ];
  const MEANINGS = [["A", "A is better"], ["B", "B is better"], ["tie", "tie"], ["both_bad", "both bad"]];
  const MAX_LABELLED_POINTS = 21;
  // Graded preference (tasks/schema.py): strengths 1..strength_levels, 3 unless set, 5 at most.
  const STRENGTH_LEVELS = 3;
  const MAX_STRENGTH_LEVELS = 5;
  const STRENGTH_WORDS = { 1: "slightly", 2: "clearly", 3: "much" };

  let questions = [];
  let readable = true; // the textarea holds a list the editor can show
  let problems = JSON.parse(document.getElementById("qe-problems").textContent || "[]");

  // --- the JSON text ----------------------------------------------------------------------
  // Byte for byte what the server's form writes (tasks/admin/question_editor.py schema_text):
  // JSON.stringify(value, null, 2) with keys in PostgreSQL jsonb's order (shorter first, then
  // by UTF-8 bytes) — written by hand, as JavaScript objects put integer-like keys first.
  const utf8 = new TextEncoder();
  function jsonbOrder(a, b) {
    const x = utf8.encode(a);
    const y = utf8.encode(b);
    if (x.length !== y.length) return x.length - y.length;
    for (let i = 0; i < x.length; i += 1) if (x[i] !== y[i]) return x[i] - y[i];
    return 0;
  }

  function serialize(value, indent = "") {
    const inner = `${indent}  `;
    if (Array.isArray(value)) {
      if (!value.length) return "[]";
      return `[\n${value.map((v) => inner + serialize(v, inner)).join(",\n")}\n${indent}]`;
    }
    if (value !== null && typeof value === "object") {
      const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort(jsonbOrder);
      if (!keys.length) return "{}";
      const lines = keys.map((k) => `${inner}${JSON.stringify(k)}: ${serialize(value[k], inner)}`);
      return `{\n${lines.join(",\n")}\n${indent}}`;
    }
    return JSON.stringify(value === undefined ? null : value);
  }

  function read() {
    const text = textarea.value.trim();
    try {
      const parsed = text ? JSON.parse(text) : [];
      readable = Array.isArray(parsed) && parsed.every((q) => q && typeof q === "object" && !Array.isArray(q));
      if (readable) questions = parsed;
    } catch (error) {
      readable = false;
    }
  }

  function write() {
    textarea.value = serialize(questions);
    schedulePreview();
  }

  // --- building fields ----------------------------------------------------------------------
  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    Object.entries(attrs).forEach(([k, v]) => {
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : v);
    });
    children.forEach((c) => c && node.append(c));
    return node;
  }

  // One labelled field. ``type``: text, long (several lines), int, float, key, strength, bool,
  // means, kind.
  function input(id, label, path, value, type = "text", extra = {}) {
    let control;
    const data = { path: path.join("."), type };
    if (type === "bool") {
      control = el("input", { type: "checkbox", id, checked: Boolean(value), dataset: data });
      return el("div", { class: "qe-field qe-check" }, [control, el("label", { for: id, text: label })]);
    }
    if (type === "means" || type === "strength" || type === "kind") {
      const options = type === "means" ? MEANINGS
        : type === "kind" ? KINDS
          : strengthOptions(extra.levels, value);
      control = el("select", { id, dataset: data }, options.map(([v, t]) =>
        el("option", { value: v, text: t, selected: String(value ?? "") === v })));
    } else if (type === "long") {
      control = el("textarea", { id, rows: "2", cols: "60", dataset: data });
      control.value = value ?? "";
    } else {
      const number = type === "int" || type === "float";
      control = el("input", {
        id,
        type: number ? "number" : "text",
        step: type === "float" ? "any" : null,
        maxlength: type === "key" ? "5" : null,
        value: value ?? "",
        dataset: data,
        ...extra,
      });
    }
    return el("div", { class: `qe-field qe-${type}` }, [el("label", { for: id, text: label }), control]);
  }

  // The strengths a label may take: 1..levels (words for the usual three), and the value
  // it has if that is outside them, so the select shows it and the server names the problem.
  function strengthOptions(levels, value) {
    const n = Number.isInteger(levels) && levels >= 1 && levels <= MAX_STRENGTH_LEVELS ? levels : STRENGTH_LEVELS;
    const options = [["", "—"]];
    for (let s = 1; s <= n; s += 1) {
      options.push([String(s), n === 3 ? `${s} (${STRENGTH_WORDS[s]})` : String(s)]);
    }
    if (value !== null && value !== undefined && !options.some(([v]) => v === String(value))) {
      options.push([String(value), String(value)]);
    }
    return options;
  }

  function tools(what, where, ids) {
    const button = (action, text, name) =>
      el("button", { type: "button", class: "qe-tool", id: `${ids}-${action}`, "aria-label": name, dataset: { action, where } }, [document.createTextNode(text)]);
    return el("div", { class: "qe-tools" }, [
      button("up", "Move up", `Move ${what} up`),
      button("down", "Move down", `Move ${what} down`),
      button("remove", "Remove", `Remove ${what}`),
    ]);
  }

  function labelRow(q, j, label, question) {
    const id = `qe-q${q}-labels${j}`;
    const at = (name) => [q, "labels", j, name];
    return el("li", { class: "qe-row", id }, [
      el("div", { class: "qe-fields" }, [
        input(`${id}-text`, "Text", at("text"), label.text),
        input(`${id}-value`, "Value", at("value"), label.value),
        input(`${id}-means`, "Meaning", at("means"), label.means, "means"),
        input(`${id}-key`, "Shortcut key", at("key"), label.key, "key"),
        input(`${id}-tooltip`, "Tooltip", at("tooltip"), label.tooltip),
        input(`${id}-strength`, "Strength", at("strength"), label.strength, "strength", { levels: question.strength_levels }),
      ]),
      tools(`label ${j + 1}`, `${q}.labels.${j}`, id),
    ]);
  }

  function optionRow(q, j, option) {
    const id = `qe-q${q}-options${j}`;
    const at = (name) => [q, "options", j, name];
    const o = typeof option === "string" ? { value: option } : option;
    return el("li", { class: "qe-row", id }, [
      el("div", { class: "qe-fields" }, [
        input(`${id}-value`, "Value", at("value"), o.value),
        input(`${id}-text`, "Text", at("text"), o.text),
        input(`${id}-key`, "Shortcut key", at("key"), o.key, "key"),
        input(`${id}-tooltip`, "Tooltip", at("tooltip"), o.tooltip),
      ]),
      tools(`option ${j + 1}`, `${q}.options.${j}`, id),
    ]);
  }

  function rows(q, part, items, makeRow, noun) {
    const list = Array.isArray(items) ? items : [];
    return el("fieldset", { class: "qe-sub", id: `qe-q${q}-${part}` }, [
      el("legend", { text: part === "labels" ? "Labels (the choices)" : "Options" }),
      el("ol", { class: "qe-rows" }, list.map((item, j) => makeRow(q, j, item, questions[q]))),
      el("button", { type: "button", id: `qe-q${q}-add-${noun}`, dataset: { action: "add", where: `${q}.${part}` } }, [document.createTextNode(`Add ${noun}`)]),
    ]);
  }

  function scaleFields(q, question) {
    const scale = question.scale && typeof question.scale === "object" ? question.scale : {};
    const low = Number.isInteger(scale.min) ? scale.min : 1;
    const high = Number.isInteger(scale.max) ? scale.max : 5;
    const labels = scale.labels && typeof scale.labels === "object" ? scale.labels : {};
    const points = [];
    if (high >= low && high - low < MAX_LABELLED_POINTS) {
      for (let p = low; p <= high; p += 1) {
        points.push(input(`qe-q${q}-scale-label${p}`, `Label for ${p}`, [q, "scale", "labels", String(p)], labels[String(p)]));
      }
    }
    return [
      input(`qe-q${q}-criterion`, "Criterion", [q, "criterion"], question.criterion),
      input(`qe-q${q}-weight`, "Weight", [q, "weight"], question.weight, "float", { min: "0" }),
      input(`qe-q${q}-scale-min`, "Scale from", [q, "scale", "min"], scale.min, "int"),
      input(`qe-q${q}-scale-max`, "Scale to", [q, "scale", "max"], scale.max, "int"),
      el("fieldset", { class: "qe-sub qe-points", id: `qe-q${q}-scale-labels` }, [
        el("legend", { text: "Point labels (anchors)" }),
        ...(points.length ? points : [el("p", { class: "help", text: "Label the points in the JSON view." })]),
      ]),
    ];
  }

  function questionBlock(q, question) {
    const kind = question.kind;
    const id = `qe-q${q}`;
    const title = `Question ${q + 1}${question.name ? `: ${question.name}` : ""}`;
    const fields = [
      input(`${id}-kind`, "Kind", [q, "kind"], kind, "kind"),
      input(`${id}-name`, "Name (letters, digits, _)", [q, "name"], question.name),
      input(`${id}-description`, "Question text", [q, "description"], question.description, "long"),
    ];
    if (kind !== "preference" && kind !== "correction") {
      fields.push(input(`${id}-required`, "Required", [q, "required"], question.required, "bool"));
    }
    const body = [];
    if (kind === "preference") {
      if (field("mode") && field("mode").value !== "pairwise") {
        body.push(el("p", { class: "help", text: "In this mode annotators pick responses by number: no labels." }));
        if (Array.isArray(question.labels) && question.labels.length) body.push(rows(q, "labels", question.labels, labelRow, "label"));
      } else {
        fields.push(input(`${id}-strength_levels`, "Strength levels (graded labels)", [q, "strength_levels"], question.strength_levels, "int", { min: "1", max: String(MAX_STRENGTH_LEVELS), placeholder: String(STRENGTH_LEVELS) }));
        body.push(rows(q, "labels", question.labels, labelRow, "label"));
      }
    } else if (kind === "choice" || kind === "multichoice") {
      body.push(rows(q, "options", question.options, optionRow, "option"));
    } else if (kind === "rating") {
      fields.push(...scaleFields(q, question));
    } else if (kind === "text") {
      fields.push(
        input(`${id}-min_length`, "Minimum length", [q, "min_length"], question.min_length, "int"),
        input(`${id}-max_length`, "Maximum length", [q, "max_length"], question.max_length, "int"),
        input(`${id}-placeholder`, "Placeholder", [q, "placeholder"], question.placeholder),
        input(`${id}-multiline`, "Several lines", [q, "multiline"], question.multiline, "bool"),
      );
    }
    return el("li", { class: "qe-question", id }, [
      el("fieldset", {}, [
        el("legend", { text: title }),
        el("div", { class: "qe-fields" }, fields),
        ...body,
        tools(`question ${q + 1}`, String(q), id),
      ]),
    ]);
  }

  function render(focusId) {
    const focused = focusId || (mount.contains(document.activeElement) ? document.activeElement.id : "");
    mount.replaceChildren();
    mount.append(el("div", { id: "qe-problems-general", class: "qe-general" }));
    if (!readable) {
      mount.append(el("p", { class: "errornote", role: "alert", text: "The JSON below is not a list of questions the editor can show. Correct it there; the editor comes back when it is." }));
      showProblems();
      return;
    }
    mount.append(el("ol", { class: "qe-questions" }, questions.map((q, i) => questionBlock(i, q))));
    mount.append(el("div", { class: "qe-add" }, [
      input("qe-new-kind", "Kind of the new question", ["new"], "rating", "kind"),
      el("button", { type: "button", id: "qe-add-question", dataset: { action: "add", where: "" } }, [document.createTextNode("Add question")]),
    ]));
    showProblems();
    const target = focused && document.getElementById(focused);
    if (target) target.focus();
  }

  // --- changes --------------------------------------------------------------------------------
  function uniqueName(kind) {
    const taken = new Set(questions.map((q) => q.name));
    let name = kind;
    for (let n = 2; taken.has(name); n += 1) name = `${kind}_${n}`;
    return name;
  }

  function fresh(kind, keep = {}) {
    const base = { name: keep.name || uniqueName(kind), kind, description: keep.description || "" };
    const pairwise = !field("mode") || field("mode").value === "pairwise";
    switch (kind) {
      case "preference":
        return { ...base, required: true, labels: pairwise ? [newLabel("A"), newLabel("B")] : [] };
      case "choice":
      case "multichoice":
        return { ...base, required: kind === "choice", options: [newOption("yes", "Yes"), newOption("no", "No")] };
      case "rating":
        return { ...base, required: true, scale: { min: 1, max: 5, labels: {} }, criterion: "", weight: 1 };
      case "text":
        return { ...base, required: false, min_length: 0, max_length: 20000, placeholder: "", multiline: true };
      default:
        return { ...base, required: false };
    }
  }

  function newLabel(means) {
    const text = { A: "Response A is better", B: "Response B is better" }[means] || "";
    return { text, value: "", means, key: null, tooltip: "", strength: null };
  }

  function newOption(value, text) {
    return { value, text, key: null, tooltip: "" };
  }

  function coerce(control) {
    const { type } = control.dataset;
    const raw = control.type === "checkbox" ? control.checked : control.value;
    if (type === "bool") return raw;
    if (type === "int") return raw === "" || Number.isNaN(Number(raw)) ? null : Number.parseInt(raw, 10);
    if (type === "float") return raw === "" || Number.isNaN(Number(raw)) ? null : Number(raw);
    if (type === "strength") return raw === "" ? null : Number(raw);
    if (type === "key") return raw.trim() === "" ? null : raw.trim();
    return raw;
  }

  function assign(path, value) {
    const parts = path.split(".");
    const last = parts.pop();
    let node = questions;
    parts.forEach((part) => {
      if (node[part] === null || typeof node[part] !== "object") node[part] = {};
      node = node[part];
    });
    const pointLabel = parts.length === 3 && parts[1] === "scale" && parts[2] === "labels";
    if (pointLabel && value === "") delete node[last];
    else node[last] = value;
  }

  function changed(event) {
    const control = event.target;
    if (!control.dataset || !control.dataset.path || control.dataset.path === "new") return;
    const { path, type } = control.dataset;
    if (type === "kind") {
      const q = Number(path.split(".")[0]);
      questions[q] = fresh(control.value, questions[q]);
      write();
      render(control.id);
      return;
    }
    assign(path, coerce(control));
    write();
    if (/^\d+\.name$/.test(path)) {
      const q = Number(path.split(".")[0]);
      document.querySelector(`#qe-q${q} > fieldset > legend`).textContent = `Question ${q + 1}: ${control.value}`;
    }
    // The points of a scale follow its ends: drawn again once focus has moved on (Tab).
    if (event.type === "change" && /\.scale\.(min|max)$/.test(path)) setTimeout(() => render(), 0);
    // So do the strengths a label may take, once the number of levels is set.
    if (event.type === "change" && /^\d+\.strength_levels$/.test(path)) setTimeout(() => render(), 0);
  }

  function list(where) {
    if (where === "") return questions;
    const [q, part] = where.split(".");
    if (!Array.isArray(questions[q][part])) questions[q][part] = [];
    return questions[q][part];
  }

  function act(button) {
    const { action, where } = button.dataset;
    if (button.getAttribute("aria-disabled") === "true") return;
    if (action === "add") {
      const items = list(where);
      if (where === "") items.push(fresh(document.getElementById("qe-new-kind").value));
      else if (where.endsWith("labels")) items.push(newLabel("A"));
      else items.push(newOption("", ""));
      write();
      const n = items.length - 1;
      render(where === "" ? `qe-q${n}-name` : `qe-q${where.split(".")[0]}-${where.split(".")[1]}${n}-${where.endsWith("labels") ? "text" : "value"}`);
      return;
    }
    const parts = where.split(".");
    const index = Number(parts.pop());
    const items = list(parts.join("."));
    const prefix = parts.length ? `qe-q${parts[0]}-${parts[1]}` : "qe-q";
    let focus = button.id;
    if (action === "remove") {
      items.splice(index, 1);
      const next = Math.min(index, items.length - 1);
      focus = next >= 0 ? `${prefix}${next}-remove` : (parts.length ? `qe-q${parts[0]}-add-${parts[1] === "labels" ? "label" : "option"}` : "qe-add-question");
    } else {
      const other = action === "up" ? index - 1 : index + 1;
      if (other < 0 || other >= items.length) return;
      [items[index], items[other]] = [items[other], items[index]];
      focus = `${prefix}${other}-${action}`;
    }
    write();
    render(focus);
  }

  // --- problems at their fields ----------------------------------------------------------------
  function targetOf(problem) {
    if (problem.question === null || problem.question === undefined) return null;
    let id = `qe-q${problem.question}`;
    if (problem.part) id += `-${problem.part}${problem.index}`;
    const name = { "scale.labels": "scale-labels", "scale.min": "scale-min", "scale.max": "scale-max", scale: "scale-min" }[problem.field] || problem.field;
    return (name && document.getElementById(`${id}-${name}`)) || document.getElementById(id);
  }

  function showProblems() {
    document.querySelectorAll(".qe-error").forEach((node) => node.remove());
    document.querySelectorAll("[data-qe-invalid]").forEach((node) => {
      node.removeAttribute("aria-invalid");
      node.removeAttribute("aria-describedby");
      delete node.dataset.qeInvalid;
    });
    const general = document.getElementById("qe-problems-general");
    problems.forEach((problem, n) => {
      const target = readable ? targetOf(problem) : null;
      const note = el("p", { class: "errorlist qe-error", id: `qe-error-${n}`, role: "alert", text: problem.message });
      if (target && target.matches("input, select, textarea")) {
        target.closest(".qe-field").append(note);
        target.setAttribute("aria-invalid", "true");
        const before = target.getAttribute("aria-describedby");
        target.setAttribute("aria-describedby", before ? `${before} ${note.id}` : note.id);
        target.dataset.qeInvalid = "1";
      } else if (target) {
        const legend = target.querySelector("legend");
        if (legend) legend.after(note);
        else target.prepend(note);
      } else if (general) {
        general.append(note);
      }
    });
  }

  // --- the preview -----------------------------------------------------------------------------
  let timer = null;
  let sent = 0;

  function schedulePreview() {
    clearTimeout(timer);
    timer = setTimeout(refreshPreview, 300);
  }

  async function refreshPreview() {
    if (!preview) return;
    sent += 1;
    const mine = sent;
    const token = textarea.form.querySelector("[name=csrfmiddlewaretoken]").value;
    const body = {
      questions: textarea.value,
      mode: field("mode") ? field("mode").value : "pairwise",
      html_layout: field("html_layout") ? field("html_layout").value : "",
      guidelines: field("guidelines") ? field("guidelines").value : "",
      project: preview.dataset.project ? Number(preview.dataset.project) : null,
    };
    let answer;
    try {
      const response = await fetch(root.dataset.previewUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": token },
        credentials: "same-origin",
        body: JSON.stringify(body),
      });
      answer = await response.json();
    } catch (error) {
      answer = null;
    }
    if (mine !== sent) return; // a later change has asked again
    if (!answer || !Array.isArray(answer.errors)) {
      previewStatus.textContent = "The preview could not be updated.";
      return;
    }
    problems = answer.errors;
    showProblems();
    if (answer.errors.length) {
      previewStatus.textContent = `The preview shows the last valid questions: ${answer.errors.length} problem${answer.errors.length === 1 ? "" : "s"} to fix in the editor.`;
      return;
    }
    previewStatus.textContent = "";
    layoutCss.textContent = answer.css;
    preview.innerHTML = answer.html;
  }

  // Shortcuts inside the preview, as on the annotate page; nothing is ever submitted.
  const typing = (node) => node && (node.tagName === "TEXTAREA" || (node.tagName === "INPUT" && node.type === "text"));
  function press(target) {
    const choice = target.querySelector("input");
    if (!choice) return;
    choice.checked = choice.type === "checkbox" ? !choice.checked : true;
    choice.focus({ preventScroll: true });
    choice.dispatchEvent(new Event("change", { bubbles: true }));
  }

  if (preview) {
    preview.addEventListener("submit", (event) => event.preventDefault());
    preview.addEventListener("keydown", (event) => {
      if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "Enter") { event.preventDefault(); return; }
      const key = event.key.toLowerCase();
      const target = Array.from(preview.querySelectorAll("[data-hotkey]")).find((node) => node.dataset.hotkey === key);
      if (target) { event.preventDefault(); press(target); }
    });
  }

  // --- wiring ------------------------------------------------------------------------------------
  mount.addEventListener("input", (event) => { if (event.target.type !== "checkbox" && event.target.tagName !== "SELECT") changed(event); });
  mount.addEventListener("change", changed);
  // Enter in a field would save the whole project form: the editor's fields keep it.
  mount.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.matches("input, select")) event.preventDefault();
  });
  mount.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) act(button);
  });
  textarea.addEventListener("input", () => {
    read();
    render();
    schedulePreview();
  });
  ["mode", "html_layout", "guidelines"].forEach((name) => {
    const control = field(name);
    if (!control) return;
    control.addEventListener("input", schedulePreview);
    control.addEventListener("change", () => {
      if (name === "mode") render();
      schedulePreview();
    });
  });
  toggle.addEventListener("click", () => {
    const open = jsonBox.hidden;
    jsonBox.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = open ? "Hide the JSON" : "Edit as JSON";
    if (open) textarea.focus();
  });

  read();
  mount.hidden = false;
  toggle.hidden = false;
  jsonBox.hidden = true;
  toggle.setAttribute("aria-expanded", "false");
  render();
  refreshPreview();
})();
