// Training run page: poll the run's JSON and update progress, log and tables until it finishes.
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root) return;
  var url = root.dataset.url;
  function $(id) { return document.getElementById(id); }
  function text(id, value) { var el = $(id); if (el) el.textContent = value; }
  function cell(value) { var td = document.createElement("td"); td.textContent = value; return td; }
  function table(id, caption, rows, n) {
    var t = document.createElement("table");
    t.id = id;
    var c = document.createElement("caption");
    c.textContent = caption + " (n=" + n + ")";
    t.appendChild(c);
    var head = document.createElement("thead");
    var hr = document.createElement("tr");
    ["Method", "MAE", "CS(5)", "Paper MAE (APPA-REAL)"].forEach(function (h) {
      var th = document.createElement("th"); th.textContent = h; hr.appendChild(th);
    });
    head.appendChild(hr);
    t.appendChild(head);
    var body = document.createElement("tbody");
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.appendChild(cell(r.method));
      tr.appendChild(cell(r.mae === null || r.mae === undefined ? "–" : r.mae.toFixed(3)));
      tr.appendChild(cell(r.cs5 === null || r.cs5 === undefined ? "" : Math.round(r.cs5 * 100) + "%"));
      tr.appendChild(cell(r.paper === null || r.paper === undefined ? "" : String(r.paper)));
      body.appendChild(tr);
    });
    t.appendChild(body);
    return t;
  }
  function duration(s) {
    if (s === null || s === undefined) return "–";
    s = Math.round(s);
    if (s < 90) return s + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  function labelled(label, value) { var td = cell(value); td.setAttribute("data-label", label); return td; }
  function renderSteps(plan) {
    if (!plan) return;
    text("run-recipe", "Recipe " + plan.recipe + " (" + plan.why + "): " + plan.title + ". Budget " +
         plan.budget_minutes + " min; " + plan.level + ".");
    var body = $("run-steps-body");
    body.textContent = "";
    plan.steps.forEach(function (s) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-step", s.key);
      tr.className = "step-" + s.status;
      tr.appendChild(labelled("Step", s.title));
      tr.appendChild(labelled("Status", s.status));
      tr.appendChild(labelled("Progress", s.progress + "%"));
      tr.appendChild(labelled("Epoch", (s.epoch === null || s.epoch === undefined ? "–" : s.epoch) +
                              (s.epochs ? "/" + s.epochs : "")));
      tr.appendChild(labelled("Valid MAE", s.valid_mae === null || s.valid_mae === undefined ? "–" : s.valid_mae.toFixed(3)));
      tr.appendChild(labelled("Elapsed", duration(s.elapsed_s)));
      tr.appendChild(labelled("Left", duration(s.eta_s)));
      body.appendChild(tr);
    });
  }
  function render(d) {
    var labels = {queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled"};
    text("run-status", labels[d.status] || d.status);
    text("run-stage", d.stage || "");
    text("run-progress", d.progress);
    $("run-bar").style.width = d.progress + "%";
    $("run-progressbar").setAttribute("aria-valuenow", d.progress);
    text("run-epoch", d.epoch);
    text("run-mae", d.valid_mae === null ? "–" : d.valid_mae.toFixed(3));
    text("run-eta", d.plan ? duration(d.plan.eta_s) : "–");
    renderSteps(d.plan);
    text("run-notice", d.notice);
    text("run-log", d.log_tail);
    if (d.finished) { var f = $("cancel-form"); if (f) f.hidden = true; }
    if (d.tables && d.tables.table2) {
      var box = $("tables-body");
      box.textContent = "";
      box.appendChild(table("table2", "Table II: apparent age MAE", d.tables.table2, d.tables.n_test));
      box.appendChild(table("table3", "Table III: real age MAE", d.tables.table3, d.tables.n_test));
      $("run-tables").hidden = false;
    }
  }
  var delay = 1000;
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (d) {
        render(d);
        delay = 1000;
        if (!d.finished) setTimeout(poll, delay);
      })
      .catch(function () { delay = Math.min(delay * 2, 15000); setTimeout(poll, delay); });
  }
  poll();
}());
