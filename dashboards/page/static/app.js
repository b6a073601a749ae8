// The dashboard page: reads the JSON API (api/v1) only, draws with the vendored Chart.js, and
// refreshes itself. The address bar's hash keeps the model, the range and the drift window
// (#model=iris&range=24h&window=2025-03-01T12:00:00Z), so that a link shows the same view.
// The default range is the last day: "everything" over a long-lived model reads its whole life.
"use strict";

const REFRESH_MS = 10000;
const RANGES_S = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 };
// Bucket sizes for the traffic charts: the smallest giving at most MAX_BUCKETS buckets.
const BUCKETS_S = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 86400, 604800];
const MAX_BUCKETS = 120;
const PAGE_SIZE = 50;
// The drift timeline's windows, at most: their shares only (one small row each).
const TIMELINE_WINDOWS = 200;

const $ = (id) => document.getElementById(id);
const charts = {};
let featuresView = null;
let shownReport = "";  // the summary of the report whose features are drawn
let windowChoices = "";  // the window list's options, as last drawn
let olderCursor = null;
let olderShown = "";  // the model and range whose older inferences were asked for: kept
let token = sessionStorage.getItem("infermon-token") || "";

// --- the address bar ---

function readState() {
  const hash = new URLSearchParams(location.hash.slice(1));
  return { model: hash.get("model") || "", range: hash.get("range") || "24h", window: hash.get("window") || "" };
}

function writeState(changes) {
  const state = Object.assign(readState(), changes);
  const hash = new URLSearchParams();
  for (const key of ["model", "range", "window"]) if (state[key]) hash.set(key, state[key]);
  if (changes.model !== undefined || changes.range !== undefined) olderShown = "";
  history.pushState(null, "", "#" + hash.toString());
  refresh();
}

// --- the API ---

class Unauthorised extends Error {}

async function api(path, params) {
  const query = params ? "?" + new URLSearchParams(params).toString() : "";
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const answer = await fetch("api/v1" + path + query, { headers: headers });
  if (answer.status === 401 || answer.status === 403) throw new Unauthorised();
  const body = await answer.json();
  if (!answer.ok) throw new Error(path + ": " + (body.error || answer.status));
  return body;
}

// --- small helpers ---

const element = InfermonFeatures.element;  // (tag, className, text): the shared view's

function row(cells) {
  const tr = element("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : element("td", null, cell));
  return tr;
}

// Formatters made once: toLocaleString() builds one per call, which cost ~70 ms for the
// first 50 rows of the inference log in a fresh browser.
const DATE_AND_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
const TIME_ONLY = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

function time(iso) {
  return iso ? DATE_AND_TIME.format(new Date(iso)) : "-";
}

function shortTime(iso, spanS) {
  return (spanS > 172800 ? DATE_AND_TIME : TIME_ONLY).format(new Date(iso));
}

function fixed(value, digits) {
  return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
}

function driftBadge(drift) {
  if (!drift) return element("span", "ifm-badge ifm-none", "no window yet");
  return element("span", drift.dataset_drift ? "ifm-badge ifm-drift" : "ifm-badge ifm-ok",
    (drift.dataset_drift ? "drift " : "ok ") + fixed(drift.share, 2));
}

// A chart made once, then given new data in place (no flicker on refresh).
function draw(id, config) {
  const existing = charts[id];
  if (existing) {
    existing.data = config.data;
    existing.options = config.options;
    existing.update("none");
    return existing;
  }
  config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options);
  charts[id] = new Chart($(id), config);
  return charts[id];
}

// --- the model list ---

function renderModels(models, selected) {
  const body = $("models").tBodies[0];
  body.replaceChildren();
  for (const model of models) {
    const recent = model.recent || {};
    const errorRate = recent.error_rate === null || recent.error_rate === undefined ? "-"
      : (recent.error_rate * 100).toFixed(1) + "%";
    const latency = recent.latency_ms || {};
    const badge = element("td");
    badge.append(driftBadge(model.drift));
    const tr = row([model.model, model.inferences, errorRate, fixed(latency.p95, 1), badge]);
    tr.dataset.model = model.model;
    if (model.model === selected) tr.classList.add("selected");
    tr.addEventListener("click", () => writeState({ model: model.model, window: "" }));
    body.append(tr);
  }
  $("no-models").hidden = models.length > 0;
}

// --- one model ---

function rangeOf(state, firstSeen) {
  const until = new Date(Date.now() + 1000);
  const seconds = RANGES_S[state.range];
  const first = firstSeen ? new Date(firstSeen) : new Date(until - 3600000);
  const since = seconds ? new Date(until - seconds * 1000) : first;
  return { since: since.toISOString(), until: until.toISOString(), spanS: (until - since) / 1000 };
}

function bucketFor(spanS) {
  return BUCKETS_S.find((size) => spanS / size <= MAX_BUCKETS) || BUCKETS_S[BUCKETS_S.length - 1];
}

function renderTraffic(traffic, spanS) {
  const labels = traffic.buckets.map((b) => shortTime(b.start, spanS));
  draw("calls-chart", {
    type: "bar",
    data: {
      labels: labels,
      datasets: [
        { label: "answered", data: traffic.buckets.map((b) => b.calls - b.errors),
          backgroundColor: "rgba(43, 108, 176, 0.6)", stack: "calls" },
        { label: "errors (status ≥ 400)", data: traffic.buckets.map((b) => b.errors),
          backgroundColor: "rgba(200, 55, 45, 0.75)", stack: "calls" },
        { label: "error rate", type: "line", yAxisID: "rate", pointRadius: 0, borderWidth: 1.5,
          borderColor: "rgba(200, 55, 45, 1)",
          data: traffic.buckets.map((b) => (b.calls ? (100 * b.errors) / b.calls : null)) },
      ],
    },
    options: {
      scales: {
        x: { stacked: true, ticks: { maxTicksLimit: 10 } },
        y: { stacked: true, beginAtZero: true, title: { display: true, text: "calls per " + traffic.bucket_s + " s" } },
        rate: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false },
          title: { display: true, text: "errors %" } },
      },
    },
  });
  const line = (label, key, colour) => ({ label: label, data: traffic.buckets.map((b) => b[key]),
    borderColor: colour, backgroundColor: colour, pointRadius: 0, borderWidth: 1.5, spanGaps: true });
  draw("latency-chart", {
    type: "line",
    data: {
      labels: labels,
      datasets: [line("p50", "latency_p50_ms", "#2b6cb0"), line("p95", "latency_p95_ms", "#d69e2e"),
        line("p99", "latency_p99_ms", "#c8372d")],
    },
    options: { scales: { x: { ticks: { maxTicksLimit: 10 } },
      y: { beginAtZero: true, title: { display: true, text: "ms" } } } },
  });
}

async function renderDrift(name, history, state, latest) {
  const reports = history.slice().sort((a, b) => a.window_start.localeCompare(b.window_start));
  const chosen = reports.find((r) => r.window_start === state.window) || reports[reports.length - 1];
  $("no-drift").hidden = reports.length > 0;
  const span = reports.length ? (new Date(reports[reports.length - 1].window_end) - new Date(reports[0].window_start)) / 1000 : 0;
  draw("drift-chart", {
    type: "bar",
    data: {
      labels: reports.map((r) => shortTime(r.window_end, span)),
      datasets: [{
        label: "share of features drifted",
        data: reports.map((r) => r.share),
        backgroundColor: reports.map((r) => (r.dataset_drift ? "rgba(200, 55, 45, 0.75)" : "rgba(43, 108, 176, 0.6)")),
        borderColor: reports.map((r) => (r === chosen ? "#111" : "transparent")),
        borderWidth: 2,
      }],
    },
    options: {
      onClick: (_, elements) => {
        if (elements.length) writeState({ window: reports[elements[0].index].window_start });
      },
      plugins: { legend: { display: false },
        tooltip: { callbacks: {
          title: (items) => windowName(reports[items[0].dataIndex]),
          afterLabel: (item) => (reports[item.dataIndex].dataset_drift ? "dataset drift" : "no dataset drift") } } },
      scales: { y: { min: 0, max: 1, title: { display: true, text: "share drifted" } },
        x: { ticks: { maxTicksLimit: 12 } } },
    },
  });
  renderWindowChoice(reports, chosen);
  await renderFeatures(name, chosen, latest);
}

function windowName(report) {
  return time(report.window_start) + " – " + time(report.window_end) + (report.dataset_drift ? " (drift)" : "");
}

// The options are rebuilt only when the windows changed: a refresh must not close the list
// under the user's pointer.
function renderWindowChoice(reports, chosen) {
  const select = $("window");
  const newestFirst = reports.slice().reverse();
  const choices = JSON.stringify(newestFirst.map((r) => [r.window_start, windowName(r)]));
  if (choices !== windowChoices) {
    select.replaceChildren(...newestFirst.map((report) => {
      const option = element("option", null, windowName(report));
      option.value = report.window_start;
      return option;
    }));
    windowChoices = choices;
  }
  if (chosen) select.value = chosen.window_start;
}

// The chosen window's per-feature table and histograms: its full report is asked for only
// when its summary changed (a new window or revision), not on every refresh.
async function renderFeatures(name, chosen, latest) {
  const summary = chosen ? JSON.stringify(chosen) : "";
  if (summary === shownReport) return;
  let report = await latest;
  if (report && !(chosen && report.window_start === chosen.window_start && report.revision === chosen.revision)) {
    report = null;  // another window or revision than the one chosen
  }
  if (chosen && !report) {
    const until = new Date(new Date(chosen.window_end).getTime() + 1).toISOString();
    const found = await api("/models/" + name + "/drift/history",
      { since: chosen.window_end, until: until, limit: 1 });
    report = found.reports.find((r) => r.window_start === chosen.window_start) || null;
  }
  if (featuresView) featuresView.destroy();
  featuresView = report ? InfermonFeatures.render($("features"), report) : null;
  if (!report) $("features").replaceChildren();
  shownReport = summary;
}

function renderPerformance(performance) {
  const windows = (performance.windows || []).filter((w) => w.labelled > 0);
  const overall = performance.overall || {};
  $("performance").hidden = !overall.labelled;
  if (!overall.labelled) return;
  const key = performance.task === "regression" ? "mae" : "accuracy";
  $("performance-overall").textContent = overall.labelled + " labelled; " +
    (key === "mae" ? "MAE " + fixed(overall.mae, 4) + ", RMSE " + fixed(overall.rmse, 4)
      : "accuracy " + fixed(overall.accuracy, 3) + ", F1 (macro) " + fixed(overall.f1, 3));
  draw("performance-chart", {
    type: "line",
    data: {
      labels: windows.map((w) => shortTime(w.window_end, 0)),
      datasets: [{ label: key, data: windows.map((w) => w[key]), borderColor: "#2b6cb0",
        backgroundColor: "#2b6cb0", pointRadius: 3 }],
    },
    options: { scales: { y: key === "accuracy" ? { min: 0, max: 1 } : { beginAtZero: true } } },
  });
}

function renderOutliers(outliers) {
  const items = outliers.outliers;
  const body = $("outliers").tBodies[0];
  body.replaceChildren();
  for (const outlier of items) {
    const parts = Object.entries(outlier.contributions || {})
      .sort((a, b) => b[1] - a[1]).slice(0, 3)
      .map(([name, value]) => name + " " + fixed(value, 2)).join(", ");
    const tr = row([time(outlier.time), outlier.request_id, outlier.row_index, fixed(outlier.score, 3),
      fixed(outlier.threshold, 3), parts]);
    tr.addEventListener("click", () => openInference(outlier.request_id));
    body.append(tr);
  }
  $("no-outliers").hidden = items.length > 0;
}

function inferenceRow(inference) {
  const status = element("td", inference.status_code >= 400 ? "status-error" : null,
    inference.status_code === null || inference.status_code === undefined ? "-" : inference.status_code);
  const tr = row([time(inference.time), inference.request_id, status, fixed(inference.latency_ms, 1),
    inference.batch_size === null || inference.batch_size === undefined ? "-" : inference.batch_size]);
  tr.dataset.requestId = inference.request_id;
  tr.addEventListener("click", () => openInference(inference.request_id));
  return tr;
}

function renderInferences(page, append) {
  const body = $("inferences").tBodies[0];
  if (!append) body.replaceChildren();
  for (const inference of page.items) body.append(inferenceRow(inference));
  olderCursor = page.next_cursor;
  $("more-inferences").hidden = !olderCursor;
}

// --- one inference, in the side panel ---

// A stored event's payload: JSON pretty-printed, anything else as the base64 the API gives.
function payloadText(event) {
  if (!event) return "(none stored)";
  if (event.encoding === "base64") return "(" + (event.content_type || "bytes") + ", base64)\n" + event.body;
  return JSON.stringify(event.body, null, 2);
}

async function openInference(requestId) {
  const inference = await api("/inferences/" + encodeURIComponent(requestId));
  $("inference-id").textContent = requestId;
  $("inference-facts").textContent = "model " + inference.model + ", status " + (inference.status_code ?? "-") +
    ", latency " + fixed(inference.latency_ms, 1) + " ms, at " + time(inference.time);
  $("inference-request").textContent = payloadText(inference.request);
  $("inference-response").textContent = payloadText(inference.response);
  $("inference-all").textContent = JSON.stringify(inference, null, 2);
  $("inference").hidden = false;
}

// --- refreshing ---

// The API requests of a model's parts. With a range of fixed length they need nothing from
// the model list, so they are sent beside it (`firstSeen` null); "everything" waits for it.
function askParts(state, firstSeen) {
  const range = rangeOf(state, firstSeen);
  const since = { since: range.since, until: range.until };
  const name = encodeURIComponent(state.model);
  // The newest window's whole report, for its feature table, when none is drawn yet and the
  // address names no window (later refreshes ask for a window's report only if it changed).
  const latest = state.window || shownReport ? Promise.resolve(null)
    : api("/models/" + name + "/drift").catch((error) => {
      if (error instanceof Unauthorised) throw error;
      return null;  // no report yet
    });
  const asked = {
    latest: latest,
    parts: [
      [api("/models/" + name + "/traffic", Object.assign({ bucket: bucketFor(range.spanS) }, since)),
        (traffic) => renderTraffic(traffic, range.spanS)],
      [api("/models/" + name + "/drift/history", Object.assign({ features: false, limit: TIMELINE_WINDOWS }, since)),
        (history) => renderDrift(name, history.reports, state, latest)],
      [api("/models/" + name + "/outliers", Object.assign({ limit: PAGE_SIZE }, since)), renderOutliers],
      [api("/models/" + name + "/inferences", Object.assign({ limit: PAGE_SIZE }, since)), (page) => {
        if (olderShown !== state.model + " " + state.range) renderInferences(page, false);
      }],
      [api("/models/" + name + "/performance", since), renderPerformance],
    ],
  };
  // Answers not drawn (the model is not listed) must not be reported as unhandled.
  for (const answer of [latest, ...asked.parts.map(([answer]) => answer)]) answer.catch(() => {});
  return asked;
}

async function refreshModel(state, model, asked) {
  $("model-name").textContent = model.model;
  $("model-facts").textContent = model.inferences + " inferences, " + model.instances + " instances; first seen " +
    time(model.first_seen) + ", last seen " + time(model.last_seen);
  const { parts } = asked || askParts(state, model.first_seen);
  // Each part drawn as soon as its answer comes (one failing leaves the others shown); all
  // drawn before this returns.
  const drawn = await Promise.allSettled(parts.map(async ([answer, render]) => render(await answer)));
  const failed = drawn.filter((part) => part.status === "rejected").map((part) => part.reason);
  if (failed.length) throw failed.find((e) => e instanceof Unauthorised) || failed[0];
}

let refreshing = null;

async function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    const state = readState();
    $("range").value = state.range;
    try {
      const listing = api("/models");
      const early = state.model && RANGES_S[state.range] ? askParts(state, null) : null;
      const models = (await listing).models;
      renderModels(models, state.model);
      const model = models.find((m) => m.model === state.model);
      $("model").hidden = !model;
      if (model) await refreshModel(state, model, early);
      // When the first render with data was done (ms since navigation): bench/dashboard_page.py
      // waits for it.
      if (models.length && !document.body.dataset.firstData) document.body.dataset.firstData = String(performance.now());
      $("token-form").hidden = true;
      $("error").hidden = true;
      $("status").textContent = "updated " + TIME_ONLY.format(new Date());
    } catch (error) {
      if (error instanceof Unauthorised) {
        $("token-form").hidden = false;
      } else {
        $("error").textContent = "Could not update: " + error.message;
        $("error").hidden = false;
      }
    }
  })();
  try {
    await refreshing;
  } finally {
    refreshing = null;
  }
}

function start() {
  $("range").addEventListener("change", () => writeState({ range: $("range").value, window: "" }));
  $("window").addEventListener("change", () => writeState({ window: $("window").value }));
  $("close-inference").addEventListener("click", () => { $("inference").hidden = true; });
  $("more-inferences").addEventListener("click", async () => {
    const state = readState();
    olderShown = state.model + " " + state.range;
    renderInferences(await api("/models/" + encodeURIComponent(state.model) + "/inferences",
      { limit: PAGE_SIZE, cursor: olderCursor }), true);
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value;
    sessionStorage.setItem("infermon-token", token);
    refresh();
  });
  window.addEventListener("hashchange", refresh);
  window.addEventListener("popstate", refresh);
  setInterval(() => { if ($("auto-refresh").checked && !document.hidden) refresh(); }, REFRESH_MS);
  refresh();
}

start();
