// Chimera's trace viewer: views chosen by the URL's fragment, data from the server's JSON API, no framework.
//   #/?filters       the trace list (GET /v1/traces), newest first, paged; "live" refreshes it every 2 s
//   #/trace/<id>     one trace: waterfall + span tree, a detail panel per span (GET /v1/traces/<id>)
//   #/session/<id>   a session's turns in time order
//   #/task/<id>      a task's record, its events (SSE) and its traces
// Text from the server is only ever set as text (never as HTML).
"use strict";

const KEY = "chimera.apiKey";
const LIVE = "chimera.live";
const POLL_MS = 2000;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const FILTERS = [
  ["since", "From", "datetime-local"], ["until", "To", "datetime-local"], ["model", "Model", "text"],
  ["expert", "Expert", "text"], ["session", "Session", "text"], ["tenant", "Tenant", "text"],
  ["task", "Task", "text"], ["min_duration_ms", "Min ms", "number"], ["min_tokens", "Min tokens", "number"],
];
const PALETTE = ["#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7"];
const view = document.getElementById("view");
let page = null; // the view on screen: its root element and the timers and streams to stop when it goes

// --- small helpers ---------------------------------------------------------------------------------------------

function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child != null && child !== false) el.append(child);
  return el;
}

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const key = sessionStorage.getItem(KEY);
  const headers = key ? { authorization: `Bearer ${key}` } : {};
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = body.error || {};
    throw new ApiError(response.status, error.message || response.statusText, error.code);
  }
  return response;
}

const getJson = async (path) => (await api(path)).json();
const parseJson = (text, fallback) => { try { return JSON.parse(text); } catch { return fallback; } };
const pad = (n, width = 2) => String(n).padStart(width, "0");

function fmtTime(ns) {
  const d = new Date(ns / 1e6);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function fmtMs(ms) {
  if (ms == null || Number.isNaN(ms)) return "";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  return ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

const statusBadge = (error) => h("span", { class: error ? "badge error" : "badge" }, error ? "error" : "ok");
const link = (hash, text) => h("a", { href: hash }, text);
const traceLink = (id, text) => link(`#/trace/${encodeURIComponent(id)}`, text);
const kvTable = (rows) => h("table", { class: "kv" }, rows.filter(([, v]) => v != null && v !== "")
  .map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, v))));

// --- navigation ------------------------------------------------------------------------------------------------

function parseHash() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || "") };
}

function later(ctx, fn, ms) {
  if (ctx === page) ctx.timers.push(setTimeout(fn, ms));
}

async function route() {
  if (page) {
    page.timers.forEach(clearTimeout);
    page.streams.forEach((c) => c.abort());
  }
  const ctx = (page = { root: h("div"), timers: [], streams: [] });
  view.replaceChildren(ctx.root);
  const { parts, params } = parseHash();
  try {
    if (parts[0] === "trace" && parts[1]) await showTrace(ctx, parts[1]);
    else if (parts[0] === "session" && parts[1]) await showSession(ctx, parts[1]);
    else if (parts[0] === "task" && parts[1]) await showTask(ctx, parts[1]);
    else await showList(ctx, params);
  } catch (e) {
    if (ctx === page && e.name !== "AbortError") ctx.root.replaceChildren(errorMessage(e));
  }
}

function errorMessage(e) {
  if (e.status === 401) {
    document.getElementById("api-key").focus();
    return h("div", { class: "message", id: "needs-key" }, "This server needs an API key: enter it at the top.");
  }
  return h("div", { class: "message error-text" }, `Error: ${e.message}`);
}

// --- the trace list --------------------------------------------------------------------------------------------

function apiQuery(params) {
  const query = new URLSearchParams();
  for (const [name, value] of params) {
    if (!value) continue;
    // the form's local date-times go out as unix nanoseconds
    const time = name === "since" || name === "until" ? Date.parse(value) : null;
    if (time === null) query.set(name, value);
    else if (!Number.isNaN(time)) query.set(name, String(BigInt(time) * 1000000n));
  }
  return query;
}

function filterForm(params, onLive) {
  const fields = FILTERS.map(([name, label, type]) =>
    h("label", {}, label, h("input", { name, type, value: params.get(name) || "", min: type === "number" ? 0 : null,
      step: type === "datetime-local" ? 1 : null })));
  const status = h("select", { name: "status" }, ["", "ok", "error"].map((s) =>
    h("option", { value: s, selected: params.get("status") === s }, s || "any")));
  const live = h("input", { type: "checkbox", id: "live", checked: sessionStorage.getItem(LIVE) === "1",
    onchange: (e) => { sessionStorage.setItem(LIVE, e.target.checked ? "1" : "0"); onLive(e.target.checked); } });
  const form = h("form", { class: "filters", id: "filters" }, fields, h("label", {}, "Status", status),
    h("label", { class: "search" }, "Search", h("input", { name: "q", type: "search", value: params.get("q") || "",
      placeholder: "span names and attribute text" })),
    h("button", { type: "submit" }, "Filter"), h("a", { href: "#/" }, "clear"),
    h("label", { class: "live" }, live, "live"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const chosen = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));
    location.hash = `#/?${chosen}`;
  });
  return form;
}

const COLUMNS = ["Time", "Root", "Duration", "Spans", "Tokens in/out", "Expert", "Model", "Status", "Session",
  "Processes"];

function traceRow(t) {
  return h("tr", { "data-trace-id": t.trace_id, class: "trace-row" },
    h("td", { class: "mono" }, fmtTime(t.start_ns)),
    h("td", {}, traceLink(t.trace_id, t.root_name)),
    h("td", { class: "num" }, fmtMs(t.duration_ms)),
    h("td", { class: "num" }, String(t.span_count)),
    h("td", { class: "num" }, `${t.input_tokens} / ${t.output_tokens}`),
    h("td", { class: "expert" }, t.expert || ""),
    h("td", { class: "model" }, t.model || ""),
    h("td", {}, statusBadge(t.error)),
    h("td", {}, t.session ? link(`#/session/${encodeURIComponent(t.session)}`, t.session.slice(0, 12)) : ""),
    h("td", { class: "muted" }, (t.processes || []).join(", ")));
}

function traceTable(id) {
  const body = h("tbody");
  const table = h("table", { id }, h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", {}, c)))), body);
  return { body, element: h("div", { class: "table-wrap" }, table) };
}

async function showList(ctx, params) {
  const { body, element } = traceTable("traces");
  const more = h("button", { id: "more", hidden: true }, "Load more");
  const count = h("span", { class: "muted", id: "count" });
  let cursor = null;
  const load = async (reset) => {
    const query = apiQuery(params);
    query.set("limit", "50");
    if (!reset && cursor) query.set("cursor", cursor);
    const pageData = await getJson(`/v1/traces?${query}`);
    if (ctx !== page) return;
    if (reset) body.replaceChildren();
    body.append(...pageData.data.map(traceRow));
    cursor = pageData.next_cursor;
    more.hidden = !cursor;
    count.textContent = body.children.length ? `${body.children.length} traces shown` : "No trace matches.";
  };
  const shown = (promise) => promise.catch((e) => count.replaceChildren(errorMessage(e)));
  const poll = async () => { // one chain for the page's life; it loads while "live" is on
    if (ctx !== page) return;
    if (sessionStorage.getItem(LIVE) === "1") await shown(load(true));
    later(ctx, poll, POLL_MS);
  };
  more.addEventListener("click", () => shown(load(false)));
  const form = filterForm(params, (on) => on && shown(load(true)));
  ctx.root.append(form, element, h("div", { class: "pager" }, more, count));
  await shown(load(true));
  later(ctx, poll, POLL_MS);
}

// --- one trace -------------------------------------------------------------------------------------------------

function processOf(span) {
  const r = span.resource || {};
  return `${r["chimera.process.role"] || r["service.name"] || "process"} ${r["process.pid"] ?? ""}`.trim();
}

function spanTree(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    if (s.parent_id && ids.has(s.parent_id)) {
      if (!children.has(s.parent_id)) children.set(s.parent_id, []);
      children.get(s.parent_id).push(s);
    } else roots.push(s); // the root, or a child whose parent has not arrived yet: shown, not dropped
  }
  const ordered = [];
  const walk = (s, depth) => {
    ordered.push({ span: s, depth, orphan: depth === 0 && s.parent_id != null });
    (children.get(s.span_id) || []).sort((a, b) => a.start_ns - b.start_ns).forEach((c) => walk(c, depth + 1));
  };
  roots.sort((a, b) => a.start_ns - b.start_ns).forEach((r) => walk(r, 0));
  return ordered;
}

function axis(totalMs) {
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const tick = h("span", { class: "tick" }, fmtMs(f * totalMs));
    tick.style.left = `${f * 100}%`;
    return tick;
  });
  return h("div", { class: "axis" }, h("div", { class: "span-label" }, "span"),
    h("div", { class: "span-track" }, ticks));
}

function waterfall(spans, colors, onSelect) {
  const start = Math.min(...spans.map((s) => s.start_ns));
  const end = Math.max(...spans.map((s) => s.end_ns || s.start_ns));
  const total = Math.max(end - start, 1);
  const rows = spanTree(spans).map(({ span, depth, orphan }) => {
    const bar = h("div", { class: "span-bar", title: processOf(span) });
    bar.style.left = `${((span.start_ns - start) / total) * 100}%`;
    bar.style.width = `${(((span.end_ns || end) - span.start_ns) / total) * 100}%`;
    bar.style.background = colors.get(processOf(span));
    const label = h("div", { class: "span-label" }, h("span", { class: "span-name" }, span.name),
      h("span", { class: "span-dur" }, fmtMs(((span.end_ns || end) - span.start_ns) / 1e6)),
      orphan ? h("span", { class: "orphan" }, "(parent not stored yet)") : null);
    label.style.paddingLeft = `${8 + depth * 14}px`;
    const row = h("div", { class: `span-row${span.status === "ERROR" ? " error" : ""}`, "data-span-id": span.span_id,
      "data-name": span.name }, label, h("div", { class: "span-track" }, bar));
    row.addEventListener("click", () => onSelect(span, row));
    return row;
  });
  return h("div", { id: "waterfall-rows" }, axis(total / 1e6), rows);
}

function processColors(spans) {
  const colors = new Map();
  for (const s of spans) if (!colors.has(processOf(s))) colors.set(processOf(s), PALETTE[colors.size % PALETTE.length]);
  return colors;
}

function traceHeader(trace, colors) {
  const spans = trace.spans;
  const root = spans.find((s) => !s.parent_id) || spans[0];
  const start = Math.min(...spans.map((s) => s.start_ns));
  const end = Math.max(...spans.map((s) => s.end_ns || s.start_ns));
  const attr = (key) => spans.map((s) => s.attributes[key]).find((v) => v != null);
  const session = attr("chimera.session") || attr("gen_ai.conversation.id");
  const task = attr("chimera.task.id");
  const errors = spans.filter((s) => s.status === "ERROR").length;
  const fact = (label, value) => h("span", { class: "fact" }, h("b", {}, `${label}: `), value);
  return [
    h("h2", {}, root.name, " ", h("span", { class: "muted mono" }, trace.trace_id)),
    h("div", { class: "trace-head" }, fact("started", fmtTime(start)), fact("duration", fmtMs((end - start) / 1e6)),
      fact("spans", String(spans.length)), fact("errors", String(errors)),
      session ? fact("session", link(`#/session/${encodeURIComponent(session)}`, session)) : null,
      task ? fact("task", link(`#/task/${encodeURIComponent(task)}`, task)) : null),
    h("div", { class: "legend", id: "legend" }, [...colors].map(([proc, color]) => {
      const swatch = h("span", { class: "swatch" });
      swatch.style.background = color;
      return h("span", { class: "process" }, swatch, proc);
    })),
  ];
}

async function showTrace(ctx, id) {
  const chart = h("div", { class: "waterfall", id: "waterfall" });
  const detail = h("aside", { class: "detail", id: "detail" }, h("p", { class: "muted" }, "Click a span for details."));
  const head = h("div");
  ctx.root.append(head, h("div", { class: "trace-body" }, chart, detail));
  let last = null;
  let selected = null;
  let quiet = 0; // polls in a row that brought nothing new
  const select = (span, row) => {
    selected = span.span_id;
    chart.querySelectorAll(".span-row.selected").forEach((r) => r.classList.remove("selected"));
    row.classList.add("selected");
    detail.replaceChildren(...spanDetail(span));
  };
  const refresh = async () => {
    let trace;
    try {
      trace = await getJson(`/v1/traces/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 404 || last) throw e;
      ctx.root.replaceChildren(h("div", { class: "message not-found", id: "not-found" },
        `No trace ${id} is stored. Check the id, or its spans have not arrived yet.`));
      return;
    }
    if (ctx !== page) return;
    const signature = JSON.stringify(trace.spans.map((s) => [s.span_id, s.end_ns, s.status]));
    const changed = signature !== last;
    quiet = changed ? 0 : quiet + 1;
    if (changed) {
      last = signature;
      const colors = processColors(trace.spans);
      head.replaceChildren(...traceHeader(trace, colors));
      chart.replaceChildren(waterfall(trace.spans, colors, select));
      const again = selected && chart.querySelector(`[data-span-id="${selected}"]`);
      if (again) again.click();
    }
    // a running request fills in: poll until its root has arrived and a poll brings nothing new (a trace whose
    // root never comes, as its caller is elsewhere, is polled for five quiet minutes)
    const rootless = !trace.spans.some((s) => !s.parent_id);
    if (changed || (rootless && quiet < 150)) later(ctx, () => refresh().catch(() => {}), POLL_MS);
  };
  await refresh();
}

// --- the detail panel of one span ------------------------------------------------------------------------------

function spanDetail(span) {
  const a = span.attributes || {};
  const ms = (span.end_ns - span.start_ns) / 1e6;
  const sections = [routerPanel(a), retrievalPanel(a), railsPanel(span), toolPanel(span), llmPanel(a, ms),
    taskPanel(a)].filter(Boolean);
  return [
    h("h3", {}, span.name),
    kvTable([["duration", fmtMs(ms)], ["status", span.status], ["process", processOf(span)],
      ["span", h("code", {}, span.span_id)], ["parent", span.parent_id ? h("code", {}, span.parent_id) : "none"]]),
    ...sections,
    h("h3", {}, "Attributes"),
    kvTable(Object.keys(a).sort().map((k) => [k, attributeValue(a[k])])),
    h("h3", {}, "Resource"),
    kvTable(Object.keys(span.resource || {}).sort().map((k) => [k, String(span.resource[k])])),
  ];
}

function attributeValue(value) {
  if (typeof value === "string" && /^[[{]/.test(value)) {
    const parsed = parseJson(value, null);
    if (parsed !== null) return h("pre", {}, JSON.stringify(parsed, null, 2));
  }
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function routerPanel(a) {
  if (!("chimera.route.expert" in a)) return null;
  const chosen = a["chimera.route.expert"];
  const probabilities = Object.entries(parseJson(a["chimera.route.probabilities"] || "{}", {}))
    .sort((x, y) => y[1] - x[1]);
  const bars = probabilities.map(([expert, p]) => {
    const bar = h("div", { class: "prob-bar" });
    bar.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
    return h("div", { class: `prob-row${expert === chosen ? " chosen" : ""}`, "data-expert": expert },
      h("span", { class: "prob-label" }, expert), h("div", { class: "prob-track" }, bar),
      h("span", { class: "prob-value" }, `${(p * 100).toFixed(1)}%`));
  });
  return h("section", { id: "router-panel" }, h("h3", {}, "Router decision"),
    bars.length ? h("div", { class: "probabilities" }, bars)
      : h("p", { class: "muted" }, "No probabilities: the request named its expert, or the router is not learned."),
    kvTable([["expert", chosen], ["confidence", Number(a["chimera.route.confidence"] ?? 0).toFixed(3)],
      ["signals", a["chimera.route.signals"] || "none"], ["runner-up", a["chimera.route.runner_up"] || "none"],
      ["spilled", String(!!a["chimera.route.spilled"])], ["explicit", String(!!a["chimera.route.explicit"])],
      ["deep stage", String(!!a["chimera.route.deep"])]]));
}

function ranksTable(rows, extra) {
  if (!rows.length) return h("p", { class: "muted" }, "Ranked nothing.");
  return h("table", {}, h("thead", {}, h("tr", {}, ["rank", "score", "chunk", "source", ...extra.map((e) => e[0])]
    .map((c) => h("th", {}, c)))),
  h("tbody", {}, rows.map((r) => h("tr", {}, h("td", { class: "num" }, String(r.rank)),
    h("td", { class: "num" }, Number(r.score).toFixed(4)), h("td", { class: "mono" }, r.chunk),
    h("td", { title: r.source }, shortSource(r)), ...extra.map((e) => h("td", {}, e[1](r)))))));
}

function shortSource(r) { // the file and its folder; the whole path is the cell's tooltip
  const name = String(r.source).split("/").slice(-2).join("/");
  return r.page ? `${name}, page ${r.page}` : name;
}

function retrievalPanel(a) {
  const retrievers = Object.keys(a).map((k) => /^chimera\.retrieval\.(.+)\.ranks$/.exec(k)).filter(Boolean)
    .map((m) => m[1]);
  if (!retrievers.length && !("chimera.retrieval.fused" in a)) return null;
  const fused = parseJson(a["chimera.retrieval.fused"] || "[]", []);
  const returned = new Map(fused.map((r) => [r.chunk, r.rank]));
  const ranks = Object.fromEntries(retrievers.map((name) =>
    [name, parseJson(a[`chimera.retrieval.${name}.ranks`], [])]));
  const rankIn = (name) => (r) => String((ranks[name].find((x) => x.chunk === r.chunk) || {}).rank ?? "-");
  const perRetriever = retrievers.map((name) => h("div", { class: "retriever", "data-retriever": name },
    h("h3", {}, `${name} ranks`),
    ranksTable(ranks[name], [["returned", (r) => (returned.has(r.chunk) ? `#${returned.get(r.chunk)}` : "")]])));
  const fusion = a["chimera.retrieval.fusion"] || "fusion";
  return h("section", { id: "retrieval-panel" }, h("h3", {}, `Fused order (${fusion}), ${a["chimera.retrieval.kind"] || "search"}`),
    fused.length ? ranksTable(fused, retrievers.map((name) => [name, rankIn(name)])) : h("p", {}, "Nothing returned."),
    perRetriever);
}

function railsPanel(span) {
  const a = span.attributes;
  if (!Object.keys(a).some((k) => k.startsWith("chimera.rails."))) return null;
  const allowed = a["chimera.rails.allowed"];
  return h("section", { id: "rails-panel" }, h("h3", {}, "Guardrail verdict"),
    kvTable([["stage", span.name.replace(/^guardrails\./, "")], ["rail", a["chimera.rails.rail"] || "none fired"],
      ["score", a["chimera.rails.score"] != null ? String(a["chimera.rails.score"]) : ""],
      ["allowed", allowed == null ? "" : h("span", { class: allowed ? "" : "error-text" }, String(allowed))],
      ["rails enabled", String(a["chimera.rails.enabled"] ?? "")]]));
}

function toolPanel(span) {
  const a = span.attributes;
  const args = a["chimera.tool.arguments"] ?? a["gen_ai.tool.call.arguments"];
  const result = a["chimera.tool.observation"] ?? a["gen_ai.tool.call.result"];
  if (args == null && result == null) return null;
  const name = a["gen_ai.tool.name"] || span.name.replace(/^(tool\.|execute_tool )/, "");
  return h("section", { id: "tool-panel" }, h("h3", {}, `Tool call: ${name}`),
    kvTable([["arguments", attributeValue(args ?? "")], ["result", h("pre", {}, String(result ?? ""))],
      ["error", span.status === "ERROR" ? h("span", { class: "error-text" }, "yes") : ""]]));
}

function llmPanel(a, ms) {
  const input = a["gen_ai.usage.input_tokens"];
  const output = a["gen_ai.usage.output_tokens"];
  if (input == null && output == null) return null;
  const ttft = a["chimera.ttft_ms"];
  const decodeMs = ttft != null ? ms - ttft : ms;
  const rate = output && decodeMs > 0 ? `${((output * 1000) / decodeMs).toFixed(1)}` : "";
  return h("section", { id: "llm-panel" }, h("h3", {}, "LLM call"),
    kvTable([["model", a["gen_ai.request.model"] || a["gen_ai.response.model"] || ""],
      ["input tokens", String(input ?? 0)], ["output tokens", String(output ?? 0)],
      ["time to first token", ttft != null ? fmtMs(ttft) : ""],
      ["tokens/s", rate && `${rate} (after the first token)`],
      ["finish", attributeValue(a["gen_ai.response.finish_reasons"] ?? "")]]));
}

function taskPanel(a) {
  const id = a["chimera.task.id"];
  if (!id) return null;
  return h("section", { id: "task-panel" }, h("h3", {}, "Task"),
    kvTable([["task", link(`#/task/${encodeURIComponent(id)}`, id)], ["kind", a["chimera.task.kind"] || ""],
      ["attempt", String(a["chimera.task.attempt"] ?? "")], ["status", a["chimera.task.status"] || ""]]));
}

// --- sessions and tasks ----------------------------------------------------------------------------------------

async function allTraces(ctx, filter, maxPages = 10) {
  const found = [];
  let cursor = null;
  for (let i = 0; i < maxPages && ctx === page; i += 1) {
    const query = new URLSearchParams({ ...filter, limit: "200", ...(cursor ? { cursor } : {}) });
    const data = await getJson(`/v1/traces?${query}`);
    found.push(...data.data);
    cursor = data.next_cursor;
    if (!cursor) break;
  }
  return found.sort((a, b) => a.start_ns - b.start_ns); // time order: the first turn first
}

async function showSession(ctx, id) {
  const { body, element } = traceTable("session-traces");
  ctx.root.append(h("h2", {}, "Session ", h("span", { class: "mono" }, id)), element);
  const traces = await allTraces(ctx, { session: id });
  body.append(...traces.map(traceRow));
  if (!traces.length) ctx.root.append(h("p", { class: "message", id: "empty" }, "No trace of this session is stored."));
}

async function showTask(ctx, id) {
  const record = h("div", { id: "task-record" });
  const events = h("ol", { class: "events", id: "task-events" });
  const answer = h("div", { class: "answer", id: "task-answer", hidden: true });
  const { body, element } = traceTable("task-traces");
  ctx.root.append(h("h2", {}, "Task ", h("span", { class: "mono" }, id)), record, h("h3", {}, "Events"), events,
    answer, h("h3", {}, "Traces"), element);
  record.replaceChildren(taskRecord(await getJson(`/v1/tasks/${encodeURIComponent(id)}`)));
  body.append(...(await allTraces(ctx, { task: id })).map(traceRow));
  await readEvents(ctx, id, (event) => {
    if (event.type === "delta") {
      answer.hidden = false;
      answer.textContent += event.data.text || "";
    } else events.append(h("li", { "data-type": event.type }, h("b", {}, event.type),
      ` (attempt ${event.attempt ?? "?"}) `, h("span", { class: "mono" }, JSON.stringify(event.data || {}))));
  });
  if (ctx === page) record.replaceChildren(taskRecord(await getJson(`/v1/tasks/${encodeURIComponent(id)}`)));
}

function taskRecord(t) {
  const time = (s) => (s ? fmtTime(s * 1e9) : "");
  return kvTable([["status", h("span", { id: "task-status" }, t.status)], ["kind", t.kind], ["model", t.model],
    ["session", t.session_id ? link(`#/session/${encodeURIComponent(t.session_id)}`, t.session_id) : ""],
    ["attempt", String(t.attempt)], ["created", time(t.created_at)], ["started", time(t.started_at)],
    ["finished", time(t.finished_at)],
    ["result", t.result ? h("pre", {}, t.result.text ?? JSON.stringify(t.result)) : ""],
    ["error", t.error ? h("span", { class: "error-text" }, JSON.stringify(t.error)) : ""]]);
}

async function readEvents(ctx, id, onEvent) {
  // server-sent events through fetch (EventSource cannot send the bearer key); stops at the terminal event
  const controller = new AbortController();
  ctx.streams.push(controller);
  const key = sessionStorage.getItem(KEY);
  const response = await fetch(`/v1/tasks/${encodeURIComponent(id)}/events`,
    { headers: key ? { authorization: `Bearer ${key}` } : {}, signal: controller.signal });
  if (!response.ok) throw new ApiError(response.status, `events: ${response.statusText}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (!data) continue; // a keep-alive comment
      const event = parseJson(data, { type: "error", data: { message: data } });
      onEvent(event.error ? { type: "error", data: event.error } : event);
      if (TERMINAL.has(event.type) || event.error) {
        controller.abort();
        return;
      }
    }
  }
}

// --- start -----------------------------------------------------------------------------------------------------

function setUpKey() {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  const state = document.getElementById("key-state");
  const show = () => { state.textContent = sessionStorage.getItem(KEY) ? "key set" : ""; };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value) sessionStorage.setItem(KEY, input.value);
    else sessionStorage.removeItem(KEY);
    input.value = "";
    show();
    route();
  });
  show();
}

setUpKey();
window.addEventListener("hashchange", route);
route();
