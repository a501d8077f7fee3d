// Import job page: follow the job's progress until it finishes, then show the outcome.
(function () {
  "use strict";
  const box = document.getElementById("import-job");
  if (!box || ["succeeded", "failed"].includes(box.dataset.status)) return;
  const bar = document.getElementById("import-progress");
  const text = document.getElementById("import-progress-text");
  const status = document.getElementById("import-status");

  async function poll() {
    try {
      const response = await fetch(box.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const job = await response.json();
        bar.value = job.progress.fraction;
        text.textContent = `${job.progress.rows.toLocaleString()} rows read`;
        status.textContent = job.status;
        if (job.status === "succeeded" || job.status === "failed") {
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
