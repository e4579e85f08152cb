// Exports page: poll the API for exports still queued or running, move their progress bars, and
// reload the page once one finishes (so counts, checksum and the download link appear).
(function () {
  "use strict";
  const rows = () => Array.from(document.querySelectorAll("tr[data-export-id]"))
    .filter((row) => row.dataset.status === "queued" || row.dataset.status === "running");

  async function poll() {
    const pending = rows();
    if (!pending.length) return;
    let finished = false;
    for (const row of pending) {
      try {
        const response = await fetch(row.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!response.ok) continue;
        const data = await response.json();
        const percent = Math.round((data.progress || 0) * 100);
        const bar = row.querySelector(".progress");
        if (bar) {
          bar.setAttribute("aria-valuenow", String(percent));
          bar.querySelector("span").style.width = percent + "%";
        }
        const label = row.querySelector(".status .label");
        if (label) label.textContent = data.status === "running" ? "Running, " + percent + "%" : "Queued";
        if (data.status !== row.dataset.status) {
          row.dataset.status = data.status;
          if (data.status === "succeeded" || data.status === "failed") finished = true;
        }
      } catch (err) {
        // A network blip: try again on the next tick.
      }
    }
    if (finished) window.location.reload();
    else window.setTimeout(poll, 2000);
  }
  window.setTimeout(poll, 1000);
})();
