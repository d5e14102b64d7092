// The nurture dashboard: reads the public reports API with an API key kept in sessionStorage.
// Every value from the API reaches the page through textContent or setAttribute, never as markup.
"use strict";

const KEY_STORAGE = "nurture.apiKey";
const SVG = "http://www.w3.org/2000/svg";
const SERIES = [
  { name: "sent", label: "Sent" },
  { name: "delivered", label: "Delivered" },
  { name: "unique_opens", label: "Unique opens" },
  { name: "unique_clicks", label: "Unique clicks" },
];

// --- the API key --------------------------------------------------------------------------------

function storedKey() {
  return window.sessionStorage.getItem(KEY_STORAGE);
}

function showKeyState() {
  const hasKey = Boolean(storedKey());
  document.getElementById("key-form").hidden = hasKey;
  document.getElementById("key-state").hidden = !hasKey;
  document.getElementById("reports").hidden = !hasKey;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") {
      url.searchParams.set(name, value);
    }
  }
  const response = await fetch(url, { headers: { Authorization: "Bearer " + storedKey(), Accept: "application/json" } });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch (error) {
      // The body was not JSON; the status text is all there is.
    }
    throw new ApiError(response.status, detail);
  }
  return response.json();
}

function explain(error) {
  if (error instanceof ApiError && error.status === 401) {
    return "The API key was rejected (401): check it, or forget it and enter another.";
  }
  if (error instanceof ApiError && error.status === 403) {
    return "The API key lacks a scope this part needs (403): " + error.message;
  }
  if (error instanceof ApiError) {
    return "The request failed (" + error.status + "): " + error.message;
  }
  return "The request failed: " + error.message;
}

// --- building elements --------------------------------------------------------------------------

function element(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) {
    node.textContent = String(text);
  }
  for (const [name, value] of Object.entries(attributes || {})) {
    node.setAttribute(name, String(value));
  }
  return node;
}

function svgElement(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    node.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    node.textContent = String(text);
  }
  return node;
}

function figureCell(tag, figure, value, formatted) {
  const node = element(tag, formatted, { "data-figure": figure });
  node.dataset.value = value === null || value === undefined ? "null" : String(value);
  return node;
}

function setFigure(figure, value, formatted) {
  for (const node of document.querySelectorAll('[data-figure="' + figure + '"]')) {
    node.textContent = formatted;
    node.dataset.value = value === null || value === undefined ? "null" : String(value);
  }
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    tr.append(cell instanceof Node ? cell : element("td", cell));
  }
  return tr;
}

function sectionError(sectionId, message) {
  const node = document.querySelector("#" + sectionId + " .section-error");
  node.textContent = message || "";
  node.hidden = !message;
}

// --- formatting ---------------------------------------------------------------------------------

function formatCount(value) {
  return value === null || value === undefined ? "–" : String(value);
}

function formatRate(value) {
  return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + "%";
}

function formatPoints(value) {
  return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + " points";
}

function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) {
    return "–";
  }
  if (seconds < 3600) {
    return (seconds / 60).toFixed(1) + " min";
  }
  if (seconds < 2 * 86400) {
    return (seconds / 3600).toFixed(1) + " h";
  }
  return (seconds / 86400).toFixed(1) + " d";
}

function formatInstant(value) {
  return value ? new Date(value).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–";
}

// --- charts -------------------------------------------------------------------------------------

function barChart(container, bars, formatValue) {
  const width = 640;
  const barHeight = 22;
  const labelWidth = 120;
  const height = bars.length * (barHeight + 6) + 6;
  const largest = Math.max(1, ...bars.map((bar) => bar.value || 0));
  const chart = svgElement("svg", { viewBox: "0 0 " + width + " " + height, role: "img", class: "bars" });
  bars.forEach((bar, index) => {
    const y = 6 + index * (barHeight + 6);
    const length = ((bar.value || 0) / largest) * (width - labelWidth - 90);
    chart.append(svgElement("text", { x: 0, y: y + barHeight - 6, class: "label" }, bar.label));
    chart.append(svgElement("rect", { x: labelWidth, y: y, width: Math.max(length, 1), height: barHeight, class: "bar" }));
    chart.append(svgElement("text", { x: labelWidth + length + 6, y: y + barHeight - 6, class: "value" }, formatValue(bar.value)));
  });
  container.replaceChildren(chart);
}

function lineChart(container, days, series) {
  const width = 640;
  const height = 220;
  const left = 40;
  const bottom = 30;
  const plotWidth = width - left - 10;
  const plotHeight = height - bottom - 10;
  const largest = Math.max(1, ...series.flatMap((line) => line.values));
  const step = days.length > 1 ? plotWidth / (days.length - 1) : 0;
  const chart = svgElement("svg", { viewBox: "0 0 " + width + " " + height, role: "img", class: "lines" });
  chart.append(svgElement("line", { x1: left, y1: 10 + plotHeight, x2: width - 10, y2: 10 + plotHeight, class: "axis" }));
  chart.append(svgElement("text", { x: 0, y: 16, class: "label" }, String(largest)));
  chart.append(svgElement("text", { x: 0, y: 10 + plotHeight, class: "label" }, "0"));
  if (days.length) {
    chart.append(svgElement("text", { x: left, y: height - 8, class: "label" }, days[0]));
    chart.append(svgElement("text", { x: width - 90, y: height - 8, class: "label" }, days[days.length - 1]));
  }
  series.forEach((line, index) => {
    const points = line.values.map((value, day) => (left + day * step).toFixed(1) + "," + (10 + plotHeight - (value / largest) * plotHeight).toFixed(1));
    chart.append(svgElement("polyline", { points: points.join(" "), class: "series series-" + index }));
  });
  const legend = element("ul", null, { class: "legend" });
  series.forEach((line, index) => legend.append(element("li", line.label, { class: "series-" + index })));
  container.replaceChildren(chart, legend);
}

// --- reports ------------------------------------------------------------------------------------

function windowParams() {
  const since = document.getElementById("since").value;
  const until = document.getElementById("until").value;
  return {
    since: since ? since + "T00:00:00Z" : null,
    until: until ? until + "T00:00:00Z" : null,
  };
}

async function loadFunnel(params) {
  const report = await api("/v1/reports/funnel", params);
  const conversions = new Map(report.conversions.map((item) => [item.from, item]));
  const rows = report.stages.map((stage) => {
    const conversion = conversions.get(stage.stage);
    return row([
      element("th", stage.stage, { scope: "row" }),
      figureCell("td", "funnel.current." + stage.stage, stage.current, formatCount(stage.current)),
      figureCell("td", "funnel.reached." + stage.stage, stage.reached, formatCount(stage.reached)),
      conversion
        ? figureCell("td", "funnel.conversion." + conversion.from + "." + conversion.to, conversion.rate, formatRate(conversion.rate) + " to " + conversion.to)
        : element("td", "–"),
    ]);
  });
  document.getElementById("funnel-rows").replaceChildren(...rows);
  setFigure("funnel.mql_to_sql_rate", report.mql_to_sql_rate, formatRate(report.mql_to_sql_rate));
  setFigure("funnel.contacts", report.contacts, formatCount(report.contacts));
  setFigure("funnel.erased", report.erased, formatCount(report.erased));
  const funnelStages = report.stages.filter((stage) => stage.stage !== "disqualified");
  barChart(document.getElementById("funnel-chart"), funnelStages.map((stage) => ({ label: stage.stage, value: stage.reached })), formatCount);
}

async function loadNurture(params) {
  const report = await api("/v1/reports/nurture-impact", params);
  const rows = [
    ["nurtured", "Nurtured by a sequence"],
    ["not_nurtured", "Not nurtured"],
  ].map(([group, label]) =>
    row([
      element("th", label, { scope: "row" }),
      figureCell("td", "nurture." + group + ".leads", report[group].leads, formatCount(report[group].leads)),
      figureCell("td", "nurture." + group + ".customers", report[group].customers, formatCount(report[group].customers)),
      figureCell("td", "nurture." + group + ".conversion_rate", report[group].conversion_rate, formatRate(report[group].conversion_rate)),
    ]),
  );
  document.getElementById("nurture-rows").replaceChildren(...rows);
  setFigure("nurture.rate_difference", report.rate_difference, formatPoints(report.rate_difference));
}

async function loadStageTimes(params) {
  const report = await api("/v1/reports/stage-times", params);
  const rows = report.stages.map((item) =>
    row([
      element("th", item.stage, { scope: "row" }),
      figureCell("td", "stage_times.median." + item.stage, item.median_seconds, formatDuration(item.median_seconds)),
      figureCell("td", "stage_times.p90." + item.stage, item.p90_seconds, formatDuration(item.p90_seconds)),
      figureCell("td", "stage_times.completed." + item.stage, item.completed_stays, formatCount(item.completed_stays)),
      figureCell("td", "stage_times.open." + item.stage, item.open_stays, formatCount(item.open_stays)),
    ]),
  );
  document.getElementById("stage-times-rows").replaceChildren(...rows);
  const bars = report.stages.map((item) => ({ label: item.stage, value: item.median_seconds }));
  barChart(document.getElementById("stage-times-chart"), bars, formatDuration);
}

function sequenceBlock(sequence) {
  const block = element("div", null, { class: "sequence", "data-sequence": sequence.sequence_id });
  block.append(element("h3", sequence.name + " (" + sequence.status + ")"));
  const chart = element("div", null, { class: "chart" });
  const days = sequence.days.map((day) => day.day);
  lineChart(chart, days, SERIES.map((series) => ({ label: series.label, values: sequence.days.map((day) => day[series.name]) })));
  block.append(chart);

  const table = element("table");
  const head = row(["Day", ...SERIES.map((series) => series.label)].map((label) => element("th", label)));
  table.append(element("thead"), element("tbody"));
  table.tHead.append(head);
  const prefix = "performance." + sequence.sequence_id + ".";
  for (const day of sequence.days) {
    table.tBodies[0].append(
      row([element("th", day.day, { scope: "row" }), ...SERIES.map((series) => figureCell("td", prefix + day.day + "." + series.name, day[series.name], formatCount(day[series.name])))]),
    );
  }
  table.tBodies[0].append(
    row([element("th", "Total", { scope: "row" }), ...SERIES.map((series) => figureCell("td", prefix + "totals." + series.name, sequence.totals[series.name], formatCount(sequence.totals[series.name])))]),
  );
  block.append(table);
  return block;
}

async function loadPerformance(params) {
  const report = await api("/v1/reports/sequence-performance", params);
  const list = document.getElementById("performance-list");
  if (!report.sequences.length) {
    list.replaceChildren(element("p", "No sequence sent email in this window."));
    return;
  }
  list.replaceChildren(...report.sequences.map(sequenceBlock));
}

async function loadScores() {
  const model = document.getElementById("score-model").value;
  const report = await api("/v1/reports/score-distribution", { model: model });
  setFigure("scores.count", report.count, formatCount(report.count));
  setFigure("scores.mean", report.mean, formatCount(report.mean));
  const bars = report.bins.map((bin) => ({ label: bin.low + " – " + bin.high, value: bin.count }));
  const container = document.getElementById("scores-chart");
  if (!bars.length) {
    container.replaceChildren(element("p", "No contact has a score under this model."));
    return;
  }
  barChart(container, bars, formatCount);
}

async function run(sectionId, loader) {
  try {
    await loader();
    sectionError(sectionId, null);
  } catch (error) {
    sectionError(sectionId, explain(error));
  }
}

async function loadReports() {
  const params = windowParams();
  const performanceParams = params.since || params.until ? params : {};
  await Promise.all([
    run("funnel-section", () => loadFunnel(params)),
    run("nurture-section", () => loadNurture(params)),
    run("stage-times-section", () => loadStageTimes(params)),
    run("performance-section", () => loadPerformance(performanceParams)),
    run("scores-section", loadScores),
  ]);
  document.body.dataset.loaded = String(Date.now());
}

// --- contact search -----------------------------------------------------------------------------

function contactName(contact) {
  const name = [contact.first_name, contact.last_name].filter(Boolean).join(" ");
  return name || contact.email;
}

async function searchContacts(email) {
  const page = await api("/v1/contacts", { email: email, limit: 20 });
  const results = document.getElementById("contact-results");
  if (!page.items.length) {
    results.replaceChildren(element("li", "No contact has this email address."));
    return;
  }
  results.replaceChildren(
    ...page.items.map((contact) => {
      const button = element("button", contactName(contact) + " <" + contact.email + "> · " + contact.stage, { type: "button", class: "open-contact" });
      button.dataset.contactId = contact.id;
      button.addEventListener("click", () => run("contact-section", () => openContact(contact)));
      const item = element("li");
      item.append(button);
      return item;
    }),
  );
}

async function openContact(contact) {
  const path = "/v1/contacts/" + encodeURIComponent(contact.id);
  // Each part needs its own scope, so a part that fails shows the reason and the others still show.
  const [history, score, timeline] = await Promise.allSettled([
    api(path + "/stage-history", { limit: 500 }),
    api(path + "/score"),
    api(path + "/timeline", { limit: 100 }),
  ]);
  document.getElementById("contact-name").textContent = contactName(contact);
  document.getElementById("contact-summary").textContent = contact.email + " · stage " + contact.stage + " · id " + contact.id;

  document.getElementById("contact-stage-history").replaceChildren(
    ...settledRows(history, (entry) => [formatInstant(entry.at), entry.from || "–", entry.to, entry.reason || "", entry.actor]),
  );
  if (score.status === "fulfilled") {
    showLedger(score.value);
  } else {
    document.getElementById("contact-ledger").replaceChildren(element("p", explain(score.reason), { class: "part-error" }));
  }
  document.getElementById("contact-timeline").replaceChildren(
    ...settledRows(timeline, (event) => [formatInstant(event.occurred_at), event.type, JSON.stringify(event.properties)]),
  );
  document.getElementById("contact-details").hidden = false;
}

function settledRows(result, cells) {
  if (result.status === "rejected") {
    const cell = element("td", explain(result.reason), { class: "part-error", colspan: 6 });
    return [row([cell])];
  }
  return result.value.items.map((item) => row(cells(item)));
}

function showLedger(score) {
  const container = document.getElementById("contact-ledger");
  const models = Object.values(score.models || {});
  if (!models.length) {
    container.replaceChildren(element("p", "No score model has scored this contact."));
    return;
  }
  container.replaceChildren(
    ...models.map((model) => {
      const block = element("div", null, { class: "ledger", "data-model": model.model });
      block.append(element("p", model.model + ": total " + model.total + " (fit " + model.fit + ", engagement " + model.engagement + ")"));
      const table = element("table");
      table.append(element("thead"), element("tbody"));
      table.tHead.append(row(["Occurred at", "Rule", "Kind", "Points", "Now", "Reason"].map((label) => element("th", label))));
      for (const item of model.ledger) {
        table.tBodies[0].append(row([formatInstant(item.occurred_at), item.rule, item.kind, String(item.points), String(item.current_points), item.reason]));
      }
      block.append(table);
      return block;
    }),
  );
}

// --- wiring -------------------------------------------------------------------------------------

function start() {
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("api-key");
    window.sessionStorage.setItem(KEY_STORAGE, input.value.trim());
    input.value = "";
    showKeyState();
    loadReports();
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    window.sessionStorage.removeItem(KEY_STORAGE);
    showKeyState();
  });
  document.getElementById("window-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadReports();
  });
  document.getElementById("refresh").addEventListener("click", () => loadReports());
  document.getElementById("score-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run("scores-section", loadScores);
  });
  document.getElementById("contact-form").addEventListener("submit", (event) => {
    event.preventDefault();
    document.getElementById("contact-details").hidden = true;
    run("contact-section", () => searchContacts(document.getElementById("contact-email").value.trim()));
  });

  showKeyState();
  if (storedKey()) {
    loadReports();
  }
}

document.addEventListener("DOMContentLoaded", start);
