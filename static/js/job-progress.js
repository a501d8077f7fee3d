// Job pages (imports, candidate generation, exports): follow the job's progress until it finishes,
// then reload to show the outcome.
(function () {
  "use strict";
  const box = document.getElementById("job-box");
  const finished = ["succeeded", "failed", "cancelled"];
  if (!box || finished.includes(box.dataset.status)) return;
  const bar = document.getElementById("job-progress");
  const text = document.getElementById("job-progress-text");
  const status = document.getElementById("job-status");

  function describe(progress) {
    if ("rows" in progress) return `${progress.rows.toLocaleString()} rows read`;
    return `${progress.done.toLocaleString()} of ${progress.total.toLocaleString()} done, ` +
      `${progress.failed.toLocaleString()} failed`;
  }

  async function poll() {
    try {
      const response = await fetch(box.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const job = await response.json();
        if (job.progress && bar) {  // exports have no count until they finish
          bar.value = job.progress.fraction;
          text.textContent = describe(job.progress);
        }
        status.textContent = job.status;
        if (finished.includes(job.status)) {
          window.location.reload();
          return;
        }
      }
    } catch (error) {
      status.textContent = "connection lost, retrying";
    }
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 500);
})();
