// The per-feature drift view: one drift report's features as a table, each with its reference
// and current histograms drawn over each other (Chart.js). Shared by the dashboard page and
// the self-contained file of `infermon drift --html`; it builds the DOM with textContent only,
// so that column names and categories from the data are never read as HTML.
"use strict";

window.InfermonFeatures = (function () {
  const REFERENCE = { fill: "rgba(110, 110, 110, 0.40)", line: "rgba(80, 80, 80, 0.9)" };
  const CURRENT = { fill: "rgba(43, 108, 176, 0.45)", line: "rgba(43, 108, 176, 1)" };
  const DRIFTED = { fill: "rgba(200, 55, 45, 0.45)", line: "rgba(200, 55, 45, 1)" };

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function number(value) {
    if (value === null || value === undefined) return "-";
    if (!Number.isFinite(value)) return String(value);
    if (value !== 0 && Math.abs(value) < 1e-3) return value.toExponential(2);
    return value.toFixed(4);
  }

  function percent(share) {
    return share === null || share === undefined ? "-" : (share * 100).toFixed(1) + "%";
  }

  function score(feature) {
    if (feature.p_value !== null && feature.p_value !== undefined) return "p=" + number(feature.p_value);
    if (feature.distance !== null && feature.distance !== undefined) return "d=" + number(feature.distance);
    return "-";
  }

  function note(feature) {
    const notes = [];
    if (feature.status !== "ok") notes.push(feature.status + (feature.reason ? ": " + feature.reason : ""));
    if (feature.missing_drift) notes.push("missing share changed");
    if (feature.unseen_categories) notes.push(feature.unseen_categories + " unseen categories");
    return notes.join("; ");
  }

  function summary(report) {
    const line = element("p", "ifm-summary");
    const verdict = element("span", report.dataset_drift ? "ifm-badge ifm-drift" : "ifm-badge ifm-ok",
      report.dataset_drift ? "dataset drift" : "no dataset drift");
    line.append(verdict);
    const drifted = report.features.filter((f) => f.drift).length;
    const parts = [];
    if (report.instances !== undefined) parts.push(report.instances + " instances");
    parts.push(drifted + " of " + report.features.length + " features drifted");
    if (report.share !== undefined) parts.push("share " + Number(report.share).toFixed(2));
    line.append(element("span", null, " " + parts.join(", ") + " "));
    const legend = element("span", "ifm-legend");
    legend.append(element("i", "ifm-swatch ifm-swatch-reference"), " reference ",
      element("i", "ifm-swatch ifm-swatch-current"), " current ",
      element("i", "ifm-swatch ifm-swatch-drifted"), " current (drifted)");
    line.append(legend);
    return line;
  }

  // The cell's histogram canvas, or null when the feature has no histogram.
  function histogramCanvas(cell, feature) {
    const histogram = feature.histogram;
    if (!histogram || !histogram.labels || histogram.labels.length === 0) {
      cell.append(element("span", "ifm-muted", "no histogram"));
      return null;
    }
    const box = element("div", "ifm-chart");
    const canvas = element("canvas");
    canvas.setAttribute("aria-label", "histogram of " + feature.column);
    canvas.dataset.column = feature.column;
    box.append(canvas);
    cell.append(box);
    return canvas;
  }

  function histogramChart(canvas, feature) {
    const histogram = feature.histogram;
    const current = feature.drift ? DRIFTED : CURRENT;
    const bar = { borderWidth: 1, grouped: false, barPercentage: 1.0, categoryPercentage: 0.9 };
    return new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: histogram.labels,
        datasets: [
          Object.assign({ label: "reference", data: histogram.reference,
            backgroundColor: REFERENCE.fill, borderColor: REFERENCE.line }, bar),
          Object.assign({ label: "current", data: histogram.current,
            backgroundColor: current.fill, borderColor: current.line }, bar),
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (item) => item.dataset.label + ": " + percent(item.parsed.y) } },
        },
        scales: {
          x: { ticks: { display: histogram.labels.length <= 8, font: { size: 9 } } },
          y: { beginAtZero: true, ticks: { maxTicksLimit: 3, callback: (v) => Math.round(v * 100) + "%" } },
        },
      },
    });
  }

  function badgeCell(drift) {
    const cell = element("td");
    cell.append(element("span", drift ? "ifm-badge ifm-drift" : "ifm-badge ifm-ok", drift ? "DRIFT" : "no"));
    return cell;
  }

  const HEADERS = ["feature", "kind", "test", "score", "threshold", "drift",
    "missing (ref → cur)", "note", "reference vs current"];

  // Draws `report` ({features: [...], instances, share, dataset_drift}) into `container`,
  // replacing what it held. Returns a handle whose destroy() frees the charts.
  function render(container, report) {
    container.replaceChildren();
    const charts = [];
    container.append(summary(report));
    const table = element("table", "ifm-features");
    const head = element("tr");
    for (const name of HEADERS) head.append(element("th", null, name));
    table.append(element("thead"));
    table.tHead.append(head);
    const body = element("tbody");
    // A histogram is drawn when its row comes near the screen: a report of hundreds of
    // features would otherwise make hundreds of charts before anything shows.
    const waiting = new Map();
    const draw = (canvas) => {
      charts.push(histogramChart(canvas, waiting.get(canvas)));
      waiting.delete(canvas);
    };
    const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting || !waiting.has(entry.target)) continue;
        observer.unobserve(entry.target);
        draw(entry.target);
      }
    }, { rootMargin: "300px" }) : null;
    for (const feature of report.features) {
      const row = element("tr", feature.drift ? "ifm-row-drift" : "");
      row.dataset.column = feature.column;
      row.append(
        element("td", "ifm-name", feature.column),
        element("td", null, feature.kind),
        element("td", null, feature.test),
        element("td", "ifm-number", score(feature)),
        element("td", "ifm-number", number(feature.threshold)),
        badgeCell(feature.drift),
        element("td", "ifm-number",
          percent(feature.reference_missing_share) + " → " + percent(feature.missing_share)),
        element("td", "ifm-note", note(feature)),
      );
      const chartCell = element("td", "ifm-chart-cell");
      row.append(chartCell);
      body.append(row);
      const canvas = histogramCanvas(chartCell, feature);
      if (canvas) waiting.set(canvas, feature);
    }
    table.append(body);
    container.append(table);
    for (const canvas of Array.from(waiting.keys())) {
      if (observer) observer.observe(canvas);
      else draw(canvas);
    }
    return {
      destroy: () => {
        if (observer) observer.disconnect();
        charts.forEach((chart) => chart.destroy());
      },
    };
  }

  return { render: render, element: element, number: number, percent: percent };
})();
