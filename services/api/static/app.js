// borderwatch operations dashboard.
//
// State comes from the REST API (GET /api/v1/sections, /api/v1/alerts) and the
// live feed (WebSocket /ws/feed: a snapshot, then section_state / alert changes
// and heartbeats; every frame is {"type": "batch", "messages": [...]}, the
// messages in order). Every (re)connect starts again from REST + snapshot, so a
// missed message can never leave the picture wrong. The time slider shows the
// picture at an earlier hour (GET /api/v1/state?at=) while the feed keeps the live
// one current; "Live" shows it again. No build step, no network beyond this origin;
// the map (map.js) and the chart use vendored npm packages (vendor/, `make vendor`).

import { BorderMap } from "./map.js";

const KINDS = ["detection", "crossing_attempt", "apprehension", "incident",
  "military_activity", "humanitarian"];
const LEVEL_RANK = { low: 0, medium: 1, high: 2, critical: 3 };
const COUNTRY_ORDER = ["LV", "LT", "PL"];
const TOKEN_KEY = "borderwatch.token";
const ACK_BY_KEY = "borderwatch.ackBy";  // the last display name typed (a role, not a secret)
const MAX_TRANSITIONS = 30;
const MAX_RESOLVED = 30;
const HISTORY_HOURS = 168;        // the section chart and the time slider: 7 days, hourly
const DETAIL_LIST = 15;           // events, alerts and reports in the section detail
const STALE_MS = 50_000;          // the server sends a heartbeat every 20 s
const BACKOFF_MS = [500, 15_000];  // first and largest reconnect delay

const CLOSE_TOO_SLOW = 4008;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN = 4403;

const MAX_REPORTS = 50;
const STAGE_LABEL = {
  monitoring: "monitoring",
  restrictions: "restrictions on people, transport or goods",
  crossing_point_closure: "closure of crossing points",
  full_closure_criteria_met: "full closure criteria met",
};
const QUALIFIER_TEXT = { more_than: "more than ", about: "about ", at_most: "up to ", none: "", exact: "" };

const state = {
  sections: new Map(),   // section_id -> section, catalogue order
  order: new Map(),      // section_id -> catalogue index (sort tie-break)
  polylines: new Map(),  // section_id -> [[lat, lon], ...]
  alerts: new Map(),     // alert_id -> latest transition (with acked / acks from the API)
  lastAck: new Map(),    // alert_id -> newest acknowledgement known to this page
  ackIds: new Set(),     // ack_id of every acknowledgement counted since the last (re)load
  ackForbidden: "",      // why this token may not acknowledge (HTTP 403), once seen
  transitions: [],       // newest first
  selected: null,
  detail: null,          // GET /api/v1/sections/{selected}
  sort: { key: "level", dir: -1 },
  reports: new Map(),     // report_id -> report with its analysis (newest first on render)
  assessments: new Map(), // country -> assessment
  reportFilter: { country: "", source: "" },
  lastUpdate: null,      // Date of the last change received
  // The picture at an earlier hour (GET /api/v1/state?at=), shown instead of the live
  // one while set: {at, sections: Map, alerts: Map}. The feed keeps the live state current.
  history: null,
  historyAsked: null,    // the `at` last asked for (answers to older asks are dropped)
};

// What the board shows: the live state, or the picture at the slider's hour.
const shown = () => state.history || state;

let mapView = null;

const feed = { ws: null, generation: 0, attempt: 0, retryAt: 0, retryTimer: 0, staleTimer: 0 };

// ---------------------------------------------------------------- helpers

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  return fill(node, attrs, children);
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  return fill(node, attrs, children);
}

function fill(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.setAttribute("class", v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const levelBadge = (level) => el("span", { class: "level", "data-level": level }, level);

function ago(iso, now = Date.now()) {
  if (!iso) return "—";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min ago` : `${h} h ago`;
  return `${Math.floor(h / 24)} d ago`;
}

const clock = (d) => d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const hourLabel = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", hour12: false });

// An element whose text is the relative time since ``data-at``; the 1 s tick refreshes it.
const agoSpan = (iso, attrs = {}) =>
  el("span", { ...attrs, "data-at": iso || "", title: iso ? new Date(iso).toString() : "" }, ago(iso));

// ---------------------------------------------------------------- auth

function takeTokenFromUrl() {
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const query = new URLSearchParams(location.search);
  const token = hash.get("token") || query.get("token");
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  // Keep the token out of the address bar, history and screenshots.
  hash.delete("token");
  query.delete("token");
  const q = query.toString();
  const h = hash.toString();
  history.replaceState(null, "", location.pathname + (q ? `?${q}` : "") + (h ? `#${h}` : ""));
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

class AuthError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function postJson(path, body) {
  const headers = { Accept: "application/json", "Content-Type": "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const resp = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), cache: "no-store" });
  let data = null;
  try { data = await resp.json(); } catch { /* no JSON body */ }
  return { status: resp.status, data };
}

async function api(path) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const resp = await fetch(path, { headers, cache: "no-store" });
  if (resp.status === 401 || resp.status === 403) {
    let detail = "";
    try { detail = (await resp.json()).detail || ""; } catch { /* not JSON */ }
    throw new AuthError(resp.status, detail);
  }
  if (!resp.ok) {
    let detail = "";
    try {
      const body = await resp.json();
      detail = typeof body.detail === "string" ? body.detail
        : Array.isArray(body.errors) ? body.errors.map((x) => `${x.field}: ${x.reason}`).join("; ") : "";
    } catch { /* not JSON */ }
    throw new Error(`${path.split("?")[0]}: HTTP ${resp.status}${detail ? ` (${detail})` : ""}`);
  }
  return resp.json();
}

function showAuth(status, detail) {
  stopFeed();
  document.body.dataset.auth = status === 403 ? "forbidden" : "needed";
  $("#auth").hidden = false;
  $("#auth-title").textContent = status === 403 ? "Token lacks the read scope" : "Token needed";
  $("#auth-message").textContent = status === 403
    ? `The API accepted the token but refused access (HTTP 403): ${detail || "it lacks the 'read' scope"}. Enter a token with the read scope.`
    : token()
      ? `The API refused this token (HTTP 401)${detail ? `: ${detail}` : ""}. Enter a valid token.`
      : "This API requires an access token with the read scope (HTTP 401). Enter it below.";
  $("#logout").hidden = !token();
  setConnection("auth", status === 403 ? "forbidden (403)" : "token needed (401)");
  $("#token-input").focus();
}

function hideAuth() {
  delete document.body.dataset.auth;
  $("#auth").hidden = true;
  $("#logout").hidden = !token();
}

// ---------------------------------------------------------------- connection

function setConnection(kind, text) {
  const node = $("#connection");
  node.dataset.state = kind;
  $("#connection-text").textContent = text;
}

function stopFeed() {
  feed.generation += 1;
  clearTimeout(feed.retryTimer);
  clearTimeout(feed.staleTimer);
  feed.retryAt = 0;
  if (feed.ws) {
    try { feed.ws.close(1000, "client restart"); } catch { /* already closed */ }
    feed.ws = null;
  }
}

// (Re)load the whole picture from REST, then follow the live feed.
async function start() {
  stopFeed();
  const generation = feed.generation;
  setConnection(feed.attempt ? "reconnecting" : "connecting",
    feed.attempt ? `reconnecting… (attempt ${feed.attempt})` : "connecting…");
  try {
    const [sections, alerts, resolved, reports, assessments] = await Promise.all([
      api("/api/v1/sections"),
      api("/api/v1/alerts?limit=100"),
      api(`/api/v1/alerts?status=resolved&limit=${MAX_RESOLVED}`),
      api(`/api/v1/reports/recent?limit=${MAX_REPORTS}`),
      api("/api/v1/assessment"),
    ]);
    if (generation !== feed.generation) return;
    hideAuth();
    loadSections(sections);
    state.reports = new Map(reports.map((r) => [r.report_id, r]));
    state.assessments = new Map(assessments.map((a) => [a.country, a]));
    state.alerts = new Map([...resolved, ...alerts].map((a) => [a.alert_id, a]));
    state.ackIds = new Set();
    for (const a of alerts) if (a.status === "firing" && a.acked) loadLastAck(a.alert_id);
    state.transitions = [...alerts].sort(byUpdatedDesc).slice(0, MAX_TRANSITIONS);
    touch();
    loadPolylines();
    if (state.selected) loadDetail(state.selected);
  } catch (err) {
    if (generation !== feed.generation) return;
    if (err instanceof AuthError) return showAuth(err.status, err.message);
    return scheduleReconnect(`API unreachable (${err.message})`);
  }
  openFeed(generation);
}

function openFeed(generation) {
  const url = new URL("/ws/feed", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token()) url.searchParams.set("token", token());
  // The detail panel draws the selected section's 24 hourly buckets from the feed.
  url.searchParams.set("hourly", "true");
  const ws = new WebSocket(url);
  feed.ws = ws;
  armStale(generation);
  ws.onmessage = (ev) => {
    if (generation !== feed.generation) return;
    armStale(generation);
    let frame;
    try { frame = JSON.parse(ev.data); } catch { return; }
    // One frame carries every message the server had for us when it wrote, in order.
    if (frame.type !== "batch" || !Array.isArray(frame.messages)) return;
    for (const message of frame.messages) handle(message);
  };
  ws.onclose = (ev) => {
    if (generation !== feed.generation) return;
    feed.ws = null;
    clearTimeout(feed.staleTimer);
    if (ev.code === CLOSE_UNAUTHORIZED) return showAuth(401, ev.reason);
    if (ev.code === CLOSE_FORBIDDEN) return showAuth(403, ev.reason);
    if (ev.code === CLOSE_TOO_SLOW) {
      // The server dropped us because we fell behind: resync at once from REST + snapshot.
      setConnection("resync", "too slow → resyncing");
      feed.attempt = 0;
      feed.generation += 1;
      feed.retryTimer = setTimeout(start, 250);
      return;
    }
    scheduleReconnect(ev.reason || `feed closed (${ev.code})`);
  };
}

// No message, not even a heartbeat, for too long: the socket is dead without saying so.
function armStale(generation) {
  clearTimeout(feed.staleTimer);
  feed.staleTimer = setTimeout(() => {
    if (generation === feed.generation) scheduleReconnect("no heartbeat");
  }, STALE_MS);
}

function scheduleReconnect(why) {
  stopFeed();
  const [first, cap] = BACKOFF_MS;
  const base = Math.min(cap, first * 2 ** feed.attempt);
  const delay = Math.round(base * (0.8 + Math.random() * 0.4));
  feed.attempt += 1;
  feed.retryAt = Date.now() + delay;
  feed.reason = why;
  feed.retryTimer = setTimeout(start, delay);
  showRetry();
}

function showRetry() {
  if (!feed.retryAt) return;
  const s = Math.max(0, Math.ceil((feed.retryAt - Date.now()) / 1000));
  setConnection("reconnecting", `reconnecting in ${s} s (attempt ${feed.attempt})`);
  $("#connection").title = feed.reason || "";
}

// ---------------------------------------------------------------- state updates

const byUpdatedDesc = (a, b) => (a.updated_at < b.updated_at ? 1 : a.updated_at > b.updated_at ? -1 : 0);

function loadSections(list) {
  const next = new Map();
  state.order = new Map();
  list.forEach((s, i) => {
    next.set(s.section_id, s);
    state.order.set(s.section_id, i);
  });
  state.sections = next;
}

function handle(message) {
  switch (message.type) {
    case "snapshot":
    case "resync": { // resync: the full picture again, after a gap the server could not replay
      loadSections(message.payload.sections);
      const firing = new Set();
      for (const a of message.payload.alerts) {
        firing.add(a.alert_id);
        mergeAlert(a);
      }
      // Firing before the snapshot but absent from it: it ended in between.
      for (const [id, a] of state.alerts) {
        if (a.status === "firing" && !firing.has(id)) state.alerts.delete(id);
      }
      feed.attempt = 0;
      feed.retryAt = 0;
      $("#connection").title = "";
      setConnection("live", "live");
      touch();
      break;
    }
    case "section_state": {
      const p = message.payload;
      const current = state.sections.get(p.section_id);
      if (current && current.version >= p.version) return;
      const { hourly, ...rest } = p;
      state.sections.set(p.section_id, { ...(current || {}), ...rest });
      if (!state.order.has(p.section_id)) state.order.set(p.section_id, state.order.size);
      if (state.selected === p.section_id && state.detail && !state.detail.error) {
        state.detail = { ...state.detail, ...rest, hourly: mergeHourly(state.detail.hourly, hourly) };
        refreshDetailLists(p.section_id);
      }
      touch();
      break;
    }
    case "alert": {
      mergeAlert(message.payload);
      state.transitions = [message.payload, ...state.transitions.filter(
        (t) => !(t.alert_id === message.payload.alert_id && t.seq === message.payload.seq),
      )].slice(0, MAX_TRANSITIONS);
      touch();
      break;
    }
    case "analysis": {
      const a = message.payload;
      const current = state.reports.get(a.report_id);
      if (current) {
        current.analysis = a;
        touch();
      } else {
        // The analysis names its report: fetch the report (title, source) once.
        api(`/api/v1/reports/${encodeURIComponent(a.report_id)}`).then((r) => {
          state.reports.set(r.report_id, { ...r, analysis: r.analysis || a });
          trimReports();
          touch();
        }).catch(() => { /* not among the recent ones: nothing to show */ });
      }
      break;
    }
    case "ack": {
      applyAck(message.payload);
      break;
    }
    case "assessment": {
      state.assessments.set(message.payload.country, message.payload);
      touch();
      break;
    }
    default:
      break; // heartbeat, or a type this dashboard does not know yet
  }
}

function mergeAlert(a) {
  const current = state.alerts.get(a.alert_id);
  if (current && current.seq > a.seq) return;
  // A live transition carries no ack fields: acknowledgements belong to the alert.
  const acks = "acked" in a ? {} : { acked: current ? current.acked : false, acks: current ? current.acks : 0 };
  state.alerts.set(a.alert_id, { ...a, ...acks });
}

// One acknowledgement (from the feed, or this page's own POST): counted once.
function applyAck(ack) {
  if (state.ackIds.has(ack.ack_id)) return;
  state.ackIds.add(ack.ack_id);
  const known = state.lastAck.get(ack.alert_id);
  if (!known || known.acked_at <= ack.acked_at) state.lastAck.set(ack.alert_id, ack);
  const a = state.alerts.get(ack.alert_id);
  if (a) state.alerts.set(ack.alert_id, { ...a, acked: true, acks: (a.acks || 0) + 1 });
  touch();
}

// Who acknowledged an alert acked before this page loaded (REST has only the count).
const lastAckLoading = new Set();
async function loadLastAck(alertId) {
  if (state.lastAck.has(alertId) || lastAckLoading.has(alertId)) return;
  lastAckLoading.add(alertId);
  try {
    const d = await api(`/api/v1/alerts/${encodeURIComponent(alertId)}`);
    const newest = [...(d.acks || [])].sort((x, y) => (x.acked_at < y.acked_at ? -1 : 1)).pop();
    if (newest && !state.lastAck.has(alertId)) {
      state.lastAck.set(alertId, newest);
      scheduleRender();
    }
  } catch { /* the "acked" mark still shows */ } finally {
    lastAckLoading.delete(alertId);
  }
}

function trimReports() {
  const newest = [...state.reports.values()].sort(byPublishedDesc).slice(0, MAX_REPORTS);
  state.reports = new Map(newest.map((r) => [r.report_id, r]));
}

function touch() {
  state.lastUpdate = new Date();
  scheduleRender();
}

async function loadPolylines() {
  const missing = [...state.sections.keys()].filter((id) => !state.polylines.has(id));
  await Promise.all(missing.map(async (id) => {
    try {
      const d = await api(`/api/v1/sections/${encodeURIComponent(id)}`);
      state.polylines.set(id, d.polyline || []);
    } catch { /* the marker at the centre still shows */ }
  }));
  scheduleRender();
}

// The feed's 24 buckets of a state over the 168 the detail loaded: newest copy wins.
function mergeHourly(held, fresh) {
  if (!fresh || !fresh.length) return held || [];
  const byStart = new Map((held || []).map((p) => [p.start, p]));
  for (const p of fresh) byStart.set(p.start, p);
  return [...byStart.values()].sort((a, b) => Date.parse(a.start) - Date.parse(b.start)).slice(-HISTORY_HOURS);
}

async function loadDetail(id) {
  try {
    const d = await api(`/api/v1/sections/${encodeURIComponent(id)}?hours=${HISTORY_HOURS}`);
    if (state.selected !== id) return;
    state.detail = d;
    if (d.polyline) state.polylines.set(id, d.polyline);
  } catch (err) {
    if (err instanceof AuthError) return showAuth(err.status, err.message);
    if (state.selected === id) state.detail = { error: `The section detail could not be loaded: ${err.message}` };
  }
  scheduleRender();
  if (state.detail && !state.detail.error) loadDetailLists(id);
}

// The section's recent events, its alerts and the reports about its country.
async function loadDetailLists(id) {
  const country = (state.sections.get(id) || {}).country;
  const q = encodeURIComponent(id);
  try {
    const [events, alerts, reports] = await Promise.all([
      api(`/api/v1/events/recent?section=${q}&limit=${DETAIL_LIST}`),
      api(`/api/v1/alerts?section=${q}&limit=${DETAIL_LIST}`),
      country ? api(`/api/v1/reports/recent?country=${encodeURIComponent(country)}&limit=${DETAIL_LIST}`) : [],
    ]);
    if (state.selected !== id || !state.detail || state.detail.error) return;
    state.detail = { ...state.detail, events, alerts, reports };
  } catch (err) {
    if (err instanceof AuthError) return showAuth(err.status, err.message);
    if (state.selected !== id || !state.detail) return;
    state.detail = { ...state.detail, events: state.detail.events || [], alerts: state.detail.alerts || [],
      reports: state.detail.reports || [], listError: `events, alerts or reports could not be loaded: ${err.message}` };
  }
  scheduleRender();
}

// A change on the open section reloads its lists, at most every 2 s.
let listsTimer = 0;
function refreshDetailLists(id) {
  if (listsTimer) return;
  listsTimer = setTimeout(() => {
    listsTimer = 0;
    if (state.selected === id) loadDetailLists(id);
  }, 2000);
}

function select(id) {
  if (state.selected === id) return;
  state.selected = id;
  state.detail = null;
  scheduleRender();
  if (id) loadDetail(id);
}

// ---------------------------------------------------------------- rendering

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  renderHeader();
  renderTable();
  renderMap();
  renderAlerts();
  renderAssessments();
  renderReports();
  renderDetail();
}

const byPublishedDesc = (a, b) => (a.published_at < b.published_at ? 1 : a.published_at > b.published_at ? -1 : 0);

function reportLink(id, text = id) {
  return el("a", { href: `/api/v1/reports/${encodeURIComponent(id)}`, class: "report-link",
    target: "_blank", rel: "noopener" }, text);
}

// Lists are rebuilt on every change (any section's update). A keyboard user on an
// item, or on a link or button in it, keeps the focus on the same item's element
// instead of being sent back to the top of the page (the table keeps its row so).
const FOCUSABLE = "a[href], button, [tabindex]";
function replaceKeepingFocus(list, key, children) {
  const active = document.activeElement;
  const item = active && list.contains(active) ? active.closest(`[${key}]`) : null;
  const at = item && item.parentElement === list
    ? [item, ...item.querySelectorAll(FOCUSABLE)].indexOf(active) : -1;
  list.replaceChildren(...children);
  if (at < 0) return;
  const again = [...list.children].find((n) => n.getAttribute(key) === item.getAttribute(key));
  const target = again && [again, ...again.querySelectorAll(FOCUSABLE)][at];
  if (target) target.focus({ preventScroll: true });
}

function renderAssessments() {
  const list = [...state.assessments.values()].sort((a, b) => (a.country < b.country ? -1 : 1));
  $("#assessments-empty").hidden = list.length > 0;
  replaceKeepingFocus($("#assessments"), "data-country", list.map((a) => el("article", {
    class: "assessment", "data-country": a.country, "data-stage": a.stage,
  },
  el("h3", {}, el("span", { class: "id" }, a.country), " ",
    el("span", { class: "stage" }, STAGE_LABEL[a.stage] || a.stage)),
  el("p", { class: "summary" }, a.summary),
  el("table", { class: "factors" }, el("tbody", {}, a.factors.map((f) => el("tr", {
    "data-factor": f.factor, "data-level": f.level,
  },
  el("th", { scope: "row" }, f.factor.replaceAll("_", " ")),
  el("td", {}, el("span", { class: "factor-level", "data-level": f.level }, f.level)),
  el("td", { class: "evidence" },
    ...f.evidence.reports.slice(-3).flatMap((id) => [reportLink(id), " "]),
    ...f.evidence.alerts.slice(0, 3).map((id) => el("span", { class: "alert-ref" }, id, " ")),
    Object.entries(f.evidence.counts || {}).map(([k, v]) => `${k.replaceAll("_", " ")}: ${v}`).join(" · ")),
  )))),
  (a.measures_reported || []).length
    ? el("p", { class: "muted small" }, `measures reported: ${a.measures_reported.join(", ").replaceAll("_", " ")}`)
    : "")));
}

function renderReports() {
  const { country, source } = state.reportFilter;
  const list = [...state.reports.values()]
    .filter((r) => (!country || r.country === country) && (!source || r.source.type === source))
    .sort(byPublishedDesc);
  $("#reports-count").textContent = list.length;
  $("#reports-empty").hidden = list.length > 0;
  $("#reports").replaceChildren(...list.map((r) => {
    const a = r.analysis;
    return el("li", {
      class: "report", "data-report-id": r.report_id, "data-country": r.country,
      "data-source": r.source.type,
    },
    el("div", { class: "report-head" },
      el("span", { class: "id" }, r.country),
      el("span", { class: "source", "data-source": r.source.type }, r.source.type),
      el("span", { class: "title" }, r.title),
      el("span", { class: "since" }, agoSpan(r.published_at))),
    el("div", { class: "muted small" }, `${r.source.name}${a ? ` · read as ${a.language || "?"}` : " · not analysed yet"}`),
    a ? el("ul", { class: "figures" }, a.figures.map((f) => el("li", {
      class: "figure", "data-metric": f.metric, "data-value": f.value, "data-source": f.source,
      title: f.evidence || "supplied by the feed",
    }, `${f.area} ${f.metric.replaceAll("_", " ")}: ${QUALIFIER_TEXT[f.qualifier] || ""}${f.value} (${f.period.label})`))) : "",
    a ? el("ul", { class: "signals" }, a.signals.map((s) => el("li", {
      class: "signal", "data-signal": s.signal, title: s.evidence,
    }, s.signal.replaceAll("_", " ")))) : "");
  }));
}

const crossings = (s, w) => (s[`counts_${w}`] || {}).crossing_attempt || 0;

function renderHeader() {
  const countries = new Map();
  for (const s of shown().sections.values()) {
    const c = countries.get(s.country) || { h1: 0, h24: 0, level: "low" };
    c.h1 += crossings(s, "1h");
    c.h24 += crossings(s, "24h");
    if (LEVEL_RANK[s.level] > LEVEL_RANK[c.level]) c.level = s.level;
    countries.set(s.country, c);
  }
  const codes = [...countries.keys()].sort((a, b) => {
    const ia = COUNTRY_ORDER.indexOf(a);
    const ib = COUNTRY_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
  $("#totals").replaceChildren(...codes.map((code) => {
    const c = countries.get(code);
    return el("div", { class: "country", "data-country": code, "data-level": c.level,
      title: `${code}: crossing attempts; highest section level ${c.level}` },
    el("span", { class: "cc" }, code),
    el("span", { class: "metric" }, el("b", { "data-window": "24h" }, c.h24), el("small", {}, "24 h")),
    el("span", { class: "metric" }, el("b", { "data-window": "1h" }, c.h1), el("small", {}, "1 h")),
    levelBadge(c.level));
  }));
  const last = $("#last-update");
  if (state.lastUpdate) {
    last.textContent = clock(state.lastUpdate);
    last.dataset.at = state.lastUpdate.toISOString();
    last.title = state.lastUpdate.toString();
  }
}

const SORT_VALUE = {
  section_id: (s) => s.section_id,
  name: (s) => s.name || "",
  country: (s) => s.country,
  level: (s) => LEVEL_RANK[s.level] ?? 0,
  crossing_1h: (s) => crossings(s, "1h"),
  crossing_24h: (s) => crossings(s, "24h"),
  last_event_at: (s) => s.last_event_at || "",
};
for (const k of KINDS) SORT_VALUE[k] ??= (s) => (s.counts_24h || {})[k] || 0;

function sortedSections() {
  const { key, dir } = state.sort;
  const value = SORT_VALUE[key] || SORT_VALUE.level;
  return [...shown().sections.values()].sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    const c = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb));
    return c * dir || (state.order.get(a.section_id) ?? 0) - (state.order.get(b.section_id) ?? 0);
  });
}

const num = (n, col) => el("td", { class: n ? "num" : "num zero", "data-col": col }, n);

function renderTable() {
  const rows = sortedSections().map((s) => {
    const c24 = s.counts_24h || {};
    return el("tr", {
      "data-section": s.section_id,
      "data-level": s.level,
      "data-version": s.version,
      class: s.section_id === state.selected ? "selected" : null,
      "aria-selected": s.section_id === state.selected ? "true" : "false",
      tabindex: 0,
    },
    el("td", { class: "id", "data-col": "section_id" }, s.section_id),
    el("td", { "data-col": "name", title: s.name || "" }, s.name || ""),
    el("td", { "data-col": "country" }, s.country),
    el("td", { "data-col": "level" }, levelBadge(s.level)),
    num(crossings(s, "1h"), "crossing_1h"),
    el("td", { class: crossings(s, "24h") ? "num big" : "num big zero", "data-col": "crossing_24h" },
      crossings(s, "24h")),
    num(c24.detection || 0, "detection"),
    num(c24.apprehension || 0, "apprehension"),
    num(c24.incident || 0, "incident"),
    num(c24.military_activity || 0, "military_activity"),
    num(c24.humanitarian || 0, "humanitarian"),
    el("td", { "data-col": "last_event" }, agoSpan(s.last_event_at)));
  });
  const tbody = $("#sections tbody");
  const focused = document.activeElement?.closest?.("tr[data-section]")?.dataset.section;
  tbody.replaceChildren(...rows);
  // Rows are rebuilt on every change: keep keyboard focus on the same section.
  if (focused) tbody.querySelector(`tr[data-section="${CSS.escape(focused)}"]`)?.focus();
  for (const th of document.querySelectorAll("#sections th[data-sort]")) {
    if (th.dataset.sort === state.sort.key) {
      th.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
    } else {
      th.removeAttribute("aria-sort");
    }
  }
}

function renderMap() {
  const { sections } = shown();
  mapView.update([...sections.values()].map((s) => ({
    ...s, title: `${s.section_id} ${s.name}: ${s.level}; ${crossings(s, "24h")} crossing attempts in 24 h`,
  })), state.polylines, state.selected);
}

function alertItem(a, historic) {
  // A country-level alert (`LV-ALL`, report discrepancies) has no section to open.
  const open = () => { if (state.sections.has(a.section_id)) select(a.section_id); };
  return el("li", {
    class: "alert", "data-alert-id": a.alert_id, "data-severity": a.severity,
    "data-level": a.severity, "data-section": a.section_id, tabindex: 0,
    "data-acked": a.acked ? "true" : "false",
    onclick: open,
    onkeydown: (e) => { if (e.target === e.currentTarget && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); open(); } },
  },
  el("div", { class: "alert-head" }, levelBadge(a.severity),
    el("span", { class: "alert-section" }, a.section_id),
    el("span", { class: "since" }, "since ", historic
      ? el("time", { datetime: a.started_at }, dayClock(a.started_at)) : agoSpan(a.started_at))),
  el("div", { class: "summary" }, a.summary),
  el("div", { class: "muted small" }, `${a.rule} · ${a.value} vs ${a.threshold} in ${a.window}`),
  historic ? null : el("div", { class: "ack-row" },
    el("button", {
      type: "button", class: "ack-button",
      // The accessible name starts with the visible text (WCAG 2.5.3).
      "aria-label": `${a.acked ? "Ack again" : "Ack"}: acknowledge the ${a.severity} alert on ${a.section_id}`,
      onclick: (e) => { e.stopPropagation(); openAck(a.alert_id); },
      onkeydown: (e) => e.stopPropagation(),
    }, a.acked ? "Ack again" : "Ack"),
    a.acked ? el("span", { class: "acked" }, ...ackText(a)) : null));
}

const dayClock = (iso) => new Date(iso).toLocaleString([], {
  weekday: "short", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit", hour12: false,
});

function renderAlerts() {
  const pic = shown();
  const historic = pic !== state;
  const firing = [...pic.alerts.values()]
    .filter((a) => a.status === "firing")
    .sort((a, b) => (LEVEL_RANK[b.severity] - LEVEL_RANK[a.severity])
      || (a.started_at < b.started_at ? -1 : a.started_at > b.started_at ? 1 : 0));
  $("#alerts-title-text").textContent = historic ? `Firing at ${dayClock(pic.at)}` : "Firing alerts";
  $("#alerts-count").textContent = firing.length;
  $("#alerts-count").dataset.count = firing.length;
  $("#alerts-empty").hidden = firing.length > 0;
  $("#alerts-empty").textContent = historic ? "No alert was firing then." : "No alert is firing.";
  replaceKeepingFocus($("#alerts"), "data-alert-id", firing.map((a) => alertItem(a, historic)));

  // Resolved history, newest first; in the history view only what had ended by then.
  const cutoff = historic ? Date.parse(pic.at) : Infinity;
  const resolved = [...state.alerts.values()]
    .filter((a) => a.status === "resolved" && a.resolved_at && Date.parse(a.resolved_at) <= cutoff)
    .sort((a, b) => (a.resolved_at < b.resolved_at ? 1 : a.resolved_at > b.resolved_at ? -1 : 0))
    .slice(0, MAX_RESOLVED);
  $("#resolved-count").textContent = resolved.length;
  $("#resolved-empty").hidden = resolved.length > 0;
  $("#resolved").replaceChildren(...resolved.map((a) => el("li", {
    "data-alert-id": a.alert_id, "data-severity": a.severity, "data-section": a.section_id,
  },
  el("div", { class: "resolved-head" }, levelBadge(a.severity),
    el("span", { class: "alert-section" }, a.section_id),
    el("span", { class: "since" }, `${dayClock(a.started_at)} → `,
      el("time", { datetime: a.resolved_at, title: a.resolved_at }, dayClock(a.resolved_at)))),
  el("div", { class: "summary" }, a.summary),
  a.acked ? el("div", { class: "muted small" }, `acknowledged (${a.acks})`) : null)));

  $("#transitions").replaceChildren(...state.transitions.filter(
    (t) => Date.parse(t.updated_at) <= cutoff,
  ).map((t) => el("li", {
    "data-alert-id": t.alert_id, "data-status": t.status, "data-seq": t.seq,
  },
  el("time", { datetime: t.updated_at, title: t.updated_at }, clock(new Date(t.updated_at))),
  el("span", { class: `status ${t.status}` }, t.status),
  levelBadge(t.severity),
  el("span", { class: "summary" }, t.summary))));
}

// The detail panel keeps its chart (uPlot) across renders; the rest is rebuilt.
const detailView = { id: null, chart: null, chartKey: "", resize: null };

function renderDetail() {
  const panel = $("#detail");
  panel.hidden = !state.selected;
  if (!state.selected) {
    destroyChart();
    return;
  }
  panel.dataset.section = state.selected;
  const base = state.sections.get(state.selected) || {};
  const d = state.detail;
  $("#detail-title").replaceChildren(
    el("span", { class: "id" }, state.selected), ` · ${base.name || ""} `,
    base.country ? el("span", { class: "muted" }, `(${base.country}–${base.neighbour || "BY"})`) : "",
    " ", levelBadge((d && d.level) || base.level || "low"));
  const body = $("#detail-body");
  if (!d || d.error) {
    destroyChart();
    body.replaceChildren(d ? el("p", { class: "error", role: "alert" }, d.error) : el("p", { class: "muted" }, "loading…"));
    return;
  }
  if (detailView.id !== state.selected || !body.querySelector("#hourly")) {
    destroyChart();
    detailView.id = state.selected;
    body.replaceChildren(
      el("div", { class: "detail-meta", id: "detail-meta" }),
      el("div", { class: "detail-grid" },
        el("figure", { class: "chart", id: "hourly-figure" },
          el("figcaption", { id: "hourly-caption" }, "Per hour, last 7 days"),
          el("div", { id: "hourly", role: "img", "aria-labelledby": "hourly-caption",
            "aria-describedby": "detail-counts" })),
        el("table", { class: "counts", id: "detail-counts" })),
      el("div", { class: "detail-lists" },
        el("section", { "aria-labelledby": "detail-events-title" },
          el("h3", { id: "detail-events-title" }, "Recent events"), el("ol", { id: "detail-events", tabindex: 0, "aria-labelledby": "detail-events-title", class: "events" })),
        el("section", { "aria-labelledby": "detail-alerts-title" },
          el("h3", { id: "detail-alerts-title" }, "Alerts of this section"), el("ol", { id: "detail-alerts", tabindex: 0, "aria-labelledby": "detail-alerts-title", class: "section-alerts" })),
        el("section", { "aria-labelledby": "detail-reports-title" },
          el("h3", { id: "detail-reports-title" }, `Reports about ${base.country || "its country"}`),
          el("ol", { id: "detail-reports", tabindex: 0, "aria-labelledby": "detail-reports-title", class: "section-reports" }))));
  }
  $("#detail-meta").replaceChildren(state.history ? "live figures (not the slider's hour) · " : "",
    "last event ", agoSpan(d.last_event_at),
    (d.firing_alerts || []).length ? ` · firing: ${d.firing_alerts.join(", ")}` : "",
    d.history_since ? ` · history held since ${dayClock(d.history_since)}` : "",
    d.listError ? el("span", { class: "error", role: "alert" }, ` · ${d.listError}`) : "");
  $("#detail-counts").replaceChildren(
    el("caption", { class: "muted small" }, "Counts"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "kind"), el("th", { class: "num", scope: "col" }, "1 h"),
      el("th", { class: "num", scope: "col" }, "24 h"), el("th", { class: "num", scope: "col" }, "7 d"))),
    el("tbody", {}, KINDS.map((k) => el("tr", { "data-kind": k },
      el("th", { scope: "row" }, el("i", { class: `key ${k}`, "aria-hidden": "true" }), k.replaceAll("_", " ")),
      ...["1h", "24h", "7d"].map((w) => num((d[`counts_${w}`] || {})[k] || 0, w))))));
  updateChart(d.hourly || []);
  renderDetailLists(d);
}

function renderDetailLists(d) {
  const events = d.events;
  $("#detail-events").replaceChildren(...(events === undefined ? [el("li", { class: "muted" }, "loading…")]
    : events.length ? events.map((e) => el("li", { "data-event-id": e.event_id, "data-kind": e.kind },
      el("time", { datetime: e.observed_at, title: e.observed_at }, dayClock(e.observed_at)),
      el("span", { class: "kind" }, e.kind.replaceAll("_", " ")),
      el("b", { class: "n" }, e.count),
      el("span", { class: "muted" }, `${e.source?.type?.replaceAll("_", " ") || ""} · ${e.confidence || ""}`)))
      : [el("li", { class: "muted" }, "No recent event of this section.")]));
  const alerts = d.alerts;
  $("#detail-alerts").replaceChildren(...(alerts === undefined ? [el("li", { class: "muted" }, "loading…")]
    : alerts.length ? alerts.map((a) => el("li", { "data-alert-id": a.alert_id, "data-status": a.status },
      levelBadge(a.severity), el("span", { class: `status ${a.status}` }, a.status), " ",
      el("span", { class: "summary" }, a.summary), " ",
      el("span", { class: "muted" }, a.status === "resolved" && a.resolved_at
        ? `${dayClock(a.started_at)} → ${dayClock(a.resolved_at)}` : `since ${dayClock(a.started_at)}`)))
      : [el("li", { class: "muted" }, "No alert on this section.")]));
  const reports = d.reports;
  $("#detail-reports").replaceChildren(...(reports === undefined ? [el("li", { class: "muted" }, "loading…")]
    : reports.length ? reports.map((r) => el("li", { "data-report-id": r.report_id, "data-country": r.country },
      el("time", { datetime: r.published_at, title: r.published_at }, dayClock(r.published_at)),
      el("span", { class: "source", "data-source": r.source.type }, r.source.type), " ",
      reportLink(r.report_id, r.title)))
      : [el("li", { class: "muted" }, "No recent report about this country.")]));
}

const KIND_LABEL = {
  detection: "detections", crossing_attempt: "crossing attempts", apprehension: "apprehensions",
  incident: "incidents", military_activity: "military activity", humanitarian: "humanitarian",
};
// Okabe–Ito colours (distinguishable with the common colour-vision deficiencies).
const KIND_COLOUR = {
  crossing_attempt: "#56b4e9", detection: "#e69f00", apprehension: "#009e73",
  incident: "#f0e442", military_activity: "#d55e00", humanitarian: "#cc79a7",
};
const HOUR_S = 3600;

// 168 hourly slots ending with the newest bucket (or the current hour): hours the API
// has no bucket for are gaps (null), not zero.
function chartSeries(hourly) {
  const byStart = new Map(hourly.map((p) => [Date.parse(p.start) / 1000, p]));
  const nowHour = Math.floor(Date.now() / 1000 / HOUR_S) * HOUR_S;
  const end = Math.max(nowHour, ...byStart.keys());
  const xs = Array.from({ length: HISTORY_HOURS }, (_, i) => end - (HISTORY_HOURS - 1 - i) * HOUR_S);
  const ys = KINDS.map((k) => xs.map((x) => (byStart.has(x) ? (byStart.get(x).counts || {})[k] || 0 : null)));
  return [xs, ...ys];
}

function updateChart(hourly) {
  const box = $("#hourly");
  if (!box) return;
  const data = chartSeries(hourly);
  const marker = state.history ? state.history.at : "";
  const key = JSON.stringify(data) + marker;
  box.dataset.marker = marker;
  $("#hourly-caption").textContent = marker
    ? `Per hour, last 7 days; dashed: the slider's hour, ${dayClock(marker)}` : "Per hour, last 7 days";
  // What the chart shows, for readers of the DOM (and the tests): hours drawn and held.
  box.dataset.hours = data[0].length;
  box.dataset.held = data[1].filter((v) => v !== null).length;
  KINDS.forEach((k, i) => {
    const ys = data[i + 1];
    box.dataset[`last_${k}`] = ys[ys.length - 1] ?? "";
    box.dataset[`total_${k}`] = ys.reduce((t, v) => t + (v || 0), 0);
  });
  if (detailView.chart && key === detailView.chartKey) return;
  detailView.chartKey = key;
  if (detailView.chart) {
    detailView.chart.setData(data);
    return;
  }
  if (typeof uPlot !== "function") {
    box.replaceChildren(el("p", { class: "error" }, "The chart library did not load."));
    return;
  }
  const width = Math.max(320, box.clientWidth || 640);
  const axis = { stroke: "#c9d4df", grid: { stroke: "#223040", width: 1 }, ticks: { stroke: "#2a3644" },
    font: "14px system-ui, sans-serif" };
  detailView.chart = new uPlot({
    width, height: 260,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(4, max)] } },
    axes: [{ ...axis, values: [[3600 * 24, "{DD} {MMM}", null, null, null, null, null, null, 0],
      [3600, "{HH}:00", "\n{DD} {MMM}", null, "\n{DD} {MMM}", null, null, null, 0]] },
    { ...axis, size: 48 }],
    cursor: { drag: { x: true, y: false } },
    hooks: { draw: [drawMarker] },
    legend: { show: true, live: true },
    series: [{ label: "hour", value: "{DD} {MMM} {HH}:00" },
      ...KINDS.map((k) => ({
        label: KIND_LABEL[k], stroke: KIND_COLOUR[k], width: k === "crossing_attempt" ? 2.5 : 1.6,
        paths: uPlot.paths.stepped({ align: 1 }), points: { show: false }, spanGaps: false,
        value: (u, v) => (v === null || v === undefined ? "—" : v),
      }))],
  }, data, box);
  detailView.resize = new ResizeObserver(() => {
    const w = Math.max(320, box.clientWidth);
    if (detailView.chart && Math.abs(detailView.chart.width - w) > 2) detailView.chart.setSize({ width: w, height: 260 });
  });
  detailView.resize.observe(box);
}

// The slider's hour as a dashed line over the 7 days, while the board shows history.
function drawMarker(u) {
  if (!state.history) return;
  const x = u.valToPos(Date.parse(state.history.at) / 1000, "x", true);
  if (!(x >= u.bbox.left && x <= u.bbox.left + u.bbox.width)) return;
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = "#f0e442";
  ctx.lineWidth = 2 * devicePixelRatio;
  ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
  ctx.beginPath();
  ctx.moveTo(x, u.bbox.top);
  ctx.lineTo(x, u.bbox.top + u.bbox.height);
  ctx.stroke();
  ctx.restore();
}

function destroyChart() {
  if (detailView.resize) detailView.resize.disconnect();
  if (detailView.chart) detailView.chart.destroy();
  detailView.chart = null;
  detailView.resize = null;
  detailView.chartKey = "";
  detailView.id = null;
}

function ackText(a) {
  const last = state.lastAck.get(a.alert_id);
  const more = a.acks > 1 ? ` (${a.acks} acks)` : "";
  if (!last) return [`acknowledged${more}`];
  const comment = last.comment ? `: “${last.comment}”` : "";
  return [`acknowledged by ${last.by}${comment}${more} · `, agoSpan(last.acked_at)];
}

// ---------------------------------------------------------------- time slider

// Slider value -n (n = 1 … 167): the picture at the top of the hour n - 1 hours before
// the current one (-1: this hour's start); 0: live.
function sliderAt(value) {
  const n = -Number(value);
  if (!n) return null;
  const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
  return new Date(hour - (n - 1) * 3_600_000);
}

const rfc3339 = (d) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

function setTimeline(kind, text) {
  const status = $("#timeline-status");
  status.dataset.state = kind;
  status.textContent = text;
}

function renderSlider(at) {
  const text = at ? `${dayClock(at.toISOString())} (${ago(at.toISOString())})` : "live";
  $("#slider").setAttribute("aria-valuetext", at ? `picture at ${text}` : "live");
  $("#slider-at").textContent = text;
  $("#live").setAttribute("aria-pressed", at ? "false" : "true");
}

let historyTimer = 0;
function onSlider() {
  const at = sliderAt($("#slider").value);
  renderSlider(at);
  clearTimeout(historyTimer);
  if (!at) {
    goLive();
    return;
  }
  // Dragging passes many hours: ask for the one it stops at.
  historyTimer = setTimeout(() => loadHistory(at), 200);
}

async function loadHistory(at) {
  const iso = rfc3339(at);
  state.historyAsked = iso;
  setTimeline("loading", `loading the picture at ${dayClock(iso)}…`);
  try {
    const pic = await api(`/api/v1/state?at=${encodeURIComponent(iso)}`);
    if (state.historyAsked !== iso) return;
    // An API without history answers with today's picture and no `at`: never show
    // that as the past.
    if (!pic.at || Number.isNaN(Date.parse(pic.at))) {
      throw new Error("the API answered without the hour it shows (`at`): it does not serve history");
    }
    state.history = {
      at: pic.at || iso,
      sections: new Map(pic.sections.map((s) => [s.section_id, s])),
      alerts: new Map(pic.firing_alerts.map((a) => [a.alert_id, a])),
    };
    document.body.dataset.mode = "history";
    setTimeline("history", `HISTORY: the picture at ${dayClock(state.history.at)}, not live`);
  } catch (err) {
    if (err instanceof AuthError) return showAuth(err.status, err.message);
    if (state.historyAsked !== iso) return;
    setTimeline("error", `The picture at ${dayClock(iso)} could not be loaded: ${err.message}. `
      + (state.history ? `Still showing ${dayClock(state.history.at)}.` : "Showing the live picture."));
  }
  scheduleRender();
}

function goLive() {
  clearTimeout(historyTimer);
  state.history = null;
  state.historyAsked = null;
  $("#slider").value = "0";
  delete document.body.dataset.mode;
  renderSlider(null);
  setTimeline("live", "showing the live picture");
  scheduleRender();
}

// ---------------------------------------------------------------- acknowledge

const SCOPE_HELP = "Acknowledging needs a token with the “ack” scope (an administrator makes one "
  + "with: borderwatch token create --scopes read,ack); use “forget token” to enter it.";

function showAckError(text) {
  const node = $("#ack-error");
  node.textContent = text;
  node.hidden = !text;
}

function openAck(alertId) {
  const a = state.alerts.get(alertId);
  if (!a) return;
  const dialog = $("#ack-dialog");
  dialog.dataset.alertId = alertId;
  $("#ack-alert").textContent = `${a.section_id} · ${a.severity} · ${a.summary}`;
  $("#ack-by").value = localStorage.getItem(ACK_BY_KEY) || "";
  $("#ack-comment").value = "";
  showAckError(state.ackForbidden
    ? `This token may not acknowledge alerts (${state.ackForbidden}). ${SCOPE_HELP}` : "");
  $("#ack-submit").disabled = false;
  dialog.showModal();
  ($("#ack-by").value ? $("#ack-comment") : $("#ack-by")).focus();
}

async function submitAck(e) {
  e.preventDefault();
  const form = $("#ack-form");
  if (!form.reportValidity()) return;
  const dialog = $("#ack-dialog");
  const alertId = dialog.dataset.alertId;
  const by = $("#ack-by").value.trim();
  const comment = $("#ack-comment").value.trim();
  $("#ack-submit").disabled = true;
  showAckError("");
  let result;
  try {
    result = await postJson(`/api/v1/alerts/${encodeURIComponent(alertId)}/ack`, { by, comment });
  } catch (err) {
    $("#ack-submit").disabled = false;
    return showAckError(`The API is unreachable (${err.message}); nothing was acknowledged. Try again.`);
  }
  $("#ack-submit").disabled = false;
  const { status, data } = result;
  const detail = (data && typeof data.detail === "string") ? data.detail : "";
  if (status === 202) {
    localStorage.setItem(ACK_BY_KEY, by);
    dialog.close();
    applyAck(data);
    return;
  }
  if (status === 403) {
    state.ackForbidden = detail || "HTTP 403";
    return showAckError(`This token may not acknowledge alerts (${state.ackForbidden}). ${SCOPE_HELP}`);
  }
  if (status === 401) {
    dialog.close();
    return showAuth(401, detail);
  }
  if (status === 409) return showAckError(`Not acknowledged: ${detail || "the alert is already resolved"}.`);
  if (status === 422 && data && Array.isArray(data.errors)) {
    return showAckError(`Not acknowledged: ${data.errors.map((x) => `${x.field.replace(/^body\./, "")}: ${x.reason}`).join("; ")}.`);
  }
  showAckError(`Not acknowledged (HTTP ${status}${detail ? `: ${detail}` : ""}). Try again.`);
}

// Relative times and the reconnect countdown, once a second.
function tick() {
  const now = Date.now();
  for (const node of document.querySelectorAll("[data-at]")) {
    if (node.id === "last-update") continue;
    const text = ago(node.dataset.at || null, now);
    if (node.textContent !== text) node.textContent = text;
  }
  const last = $("#last-update");
  if (last.dataset.at) last.title = `${ago(last.dataset.at, now)} (${last.dataset.at})`;
  showRetry();
}

// ---------------------------------------------------------------- wiring

function init() {
  takeTokenFromUrl();
  mapView = new BorderMap($("#map"), {
    onSelect: (id) => select(state.selected === id ? null : id),
    onError: (text) => { const n = $("#map-error"); n.textContent = text; n.hidden = false; },
  });
  mapView.load();
  for (const [id, f] of [["#zoom-in", () => mapView.zoom(1.5)], ["#zoom-out", () => mapView.zoom(1 / 1.5)],
    ["#zoom-fit", () => mapView.reset()]]) $(id).addEventListener("click", f);
  $("#slider").addEventListener("input", onSlider);
  $("#live").addEventListener("click", goLive);
  $("#login").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("#token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("#token-input").value = "";
    feed.attempt = 0;
    start();
  });
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    feed.attempt = 0;
    start();
  });
  for (const th of document.querySelectorAll("#sections th[data-sort]")) {
    th.tabIndex = 0;
    const sort = () => {
      const key = th.dataset.sort;
      const textual = ["section_id", "name", "country"].includes(key);
      state.sort = state.sort.key === key
        ? { key, dir: -state.sort.dir }
        : { key, dir: textual ? 1 : -1 };
      scheduleRender();
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        sort();
      }
    });
  }
  const tbody = $("#sections tbody");
  tbody.addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-section]");
    if (row) select(row.dataset.section);
  });
  tbody.addEventListener("keydown", (e) => {
    const row = e.target.closest("tr[data-section]");
    if (row && (e.key === "Enter" || e.key === " ")) {
      e.preventDefault();
      select(row.dataset.section);
    }
  });
  $("#detail-close").addEventListener("click", () => select(null));
  $("#ack-form").addEventListener("submit", submitAck);
  $("#ack-cancel").addEventListener("click", () => $("#ack-dialog").close());
  // The alert list is re-rendered while the dialog is open: give focus back to the
  // alert's current button, not to the page.
  $("#ack-dialog").addEventListener("close", () => {
    const id = $("#ack-dialog").dataset.alertId;
    requestAnimationFrame(() => {
      const li = [...document.querySelectorAll("#alerts li[data-alert-id]")].find((n) => n.dataset.alertId === id);
      const button = li && li.querySelector(".ack-button");
      if (button) button.focus();
    });
  });
  for (const [id, key] of [["#reports-country", "country"], ["#reports-source", "source"]]) {
    $(id).addEventListener("change", (e) => {
      state.reportFilter[key] = e.target.value;
      scheduleRender();
    });
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("#ack-dialog").open) select(null);
  });
  setInterval(tick, 1000);
  start();
}

init();
