// borderwatch operations dashboard.
//
// State comes from the REST API (GET /api/v1/sections, /api/v1/alerts) and the
// live feed (WebSocket /ws/feed: a snapshot, then section_state / alert changes
// and heartbeats; every frame is {"type": "batch", "messages": [...]}, the
// messages in order). Every (re)connect starts again from REST + snapshot, so a
// missed message can never leave the picture wrong. No build step, no network
// beyond this origin.

const KINDS = ["detection", "crossing_attempt", "apprehension", "incident",
  "military_activity", "humanitarian"];
const LEVEL_RANK = { low: 0, medium: 1, high: 2, critical: 3 };
const COUNTRY_ORDER = ["LV", "LT", "PL"];
const TOKEN_KEY = "borderwatch.token";
const ACK_BY_KEY = "borderwatch.ackBy";  // the last display name typed (a role, not a secret)
const MAX_TRANSITIONS = 30;
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
  mapKey: "",            // what the map was drawn from
};

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
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
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
    const [sections, alerts, reports, assessments] = await Promise.all([
      api("/api/v1/sections"),
      api("/api/v1/alerts?limit=100"),
      api(`/api/v1/reports/recent?limit=${MAX_REPORTS}`),
      api("/api/v1/assessment"),
    ]);
    if (generation !== feed.generation) return;
    hideAuth();
    loadSections(sections);
    state.reports = new Map(reports.map((r) => [r.report_id, r]));
    state.assessments = new Map(assessments.map((a) => [a.country, a]));
    state.alerts = new Map(alerts.map((a) => [a.alert_id, a]));
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
      if (state.selected === p.section_id && state.detail) {
        state.detail = { ...state.detail, ...rest, hourly: hourly || state.detail.hourly };
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

async function loadDetail(id) {
  try {
    const d = await api(`/api/v1/sections/${encodeURIComponent(id)}`);
    if (state.selected !== id) return;
    state.detail = d;
    if (d.polyline) state.polylines.set(id, d.polyline);
  } catch (err) {
    if (err instanceof AuthError) return showAuth(err.status, err.message);
    if (state.selected === id) state.detail = { error: err.message };
  }
  scheduleRender();
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

function reportLink(id) {
  return el("a", { href: `/api/v1/reports/${encodeURIComponent(id)}`, class: "report-link",
    target: "_blank", rel: "noopener" }, id);
}

function renderAssessments() {
  const list = [...state.assessments.values()].sort((a, b) => (a.country < b.country ? -1 : 1));
  $("#assessments-empty").hidden = list.length > 0;
  $("#assessments").replaceChildren(...list.map((a) => el("article", {
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
  for (const s of state.sections.values()) {
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
  return [...state.sections.values()].sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    const c = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb));
    return c * dir || state.order.get(a.section_id) - state.order.get(b.section_id);
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

// Schematic map: equirectangular projection (x scaled by cos of the mid latitude)
// fitted to the bounding box of every centre and polyline point.
const MAP_W = 540;
const MAP_PAD = 60;
const LABEL_PX = 17;

function renderMap() {
  const map = $("#map");
  // Rebuilt (labels re-placed) when sections, outlines or levels change; cheap for ~20.
  const key = [...state.sections.values()].map((s) => `${s.section_id}:${s.level}`).join(",")
    + "|" + [...state.polylines.keys()].sort().join(",");
  if (key !== state.mapKey) {
    buildMap(map);
    state.mapKey = key;
  }
  for (const g of map.querySelectorAll("g.sec")) {
    const s = state.sections.get(g.dataset.section);
    if (!s) continue;
    g.classList.toggle("selected", s.section_id === state.selected);
    g.querySelector("title").textContent =
      `${s.section_id} ${s.name}: ${s.level}; ${crossings(s, "24h")} crossing attempts in 24 h`;
  }
}

function buildMap(map) {
  const sections = [...state.sections.values()].filter((s) => s.centre);
  if (!sections.length) return;
  const pts = [];
  for (const s of sections) {
    pts.push([s.centre.lat, s.centre.lon]);
    for (const p of state.polylines.get(s.section_id) || []) pts.push(p);
  }
  const lats = pts.map((p) => p[0]);
  const lons = pts.map((p) => p[1]);
  const [minLat, maxLat, minLon, maxLon] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
  const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
  const spanX = Math.max((maxLon - minLon) * k, 1e-6);
  const spanY = Math.max(maxLat - minLat, 1e-6);
  const scale = (MAP_W - 2 * MAP_PAD) / spanX;
  const height = Math.round(spanY * scale + 2 * MAP_PAD);
  const xy = (lat, lon) => [MAP_PAD + (lon - minLon) * k * scale, MAP_PAD + (maxLat - lat) * scale];
  map.setAttribute("viewBox", `0 0 ${MAP_W} ${height}`);

  const grid = svg("g", { class: "grid" });
  for (let lat = Math.ceil(minLat); lat <= maxLat; lat += 1) {
    const [, y] = xy(lat, minLon);
    grid.append(svg("line", { x1: 0, x2: MAP_W, y1: y, y2: y }),
      svg("text", { x: 4, y: y - 4 }, `${lat}°N`));
  }
  for (let lon = Math.ceil(minLon); lon <= maxLon; lon += 1) {
    const [x] = xy(minLat, lon);
    grid.append(svg("line", { x1: x, x2: x, y1: 0, y2: height }),
      svg("text", { x: x + 4, y: height - 6 }, `${lon}°E`));
  }

  // Country names in the left margin, level with their sections (the EU side is west).
  const countries = svg("g", { class: "countries" });
  const byCountry = new Map();
  for (const s of sections) {
    const list = byCountry.get(s.country) || [];
    list.push(xy(s.centre.lat, s.centre.lon)[1]);
    byCountry.set(s.country, list);
  }
  const countryBoxes = [];
  for (const [code, ys] of byCountry) {
    const y = ys.reduce((t, v) => t + v, 0) / ys.length;
    countries.append(svg("text", { x: 8, y: y + 10 }, code));
    countryBoxes.push({ x0: 0, x1: 60, y0: y - 18, y1: y + 16 });
  }

  const marks = svg("g", { class: "marks" });
  // Markers first, so no label covers another section's marker.
  const placed = sections.map((s) => {
    const [cx, cy] = xy(s.centre.lat, s.centre.lon);
    return { x0: cx - 11, x1: cx + 11, y0: cy - 11, y1: cy + 11 };
  }).concat(countryBoxes);
  for (const s of sections) {
    const [cx, cy] = xy(s.centre.lat, s.centre.lon);
    const poly = (state.polylines.get(s.section_id) || []).map(([la, lo]) => xy(la, lo).map((v) => v.toFixed(1)).join(","));
    const g = svg("g", {
      class: "sec", "data-section": s.section_id, "data-level": s.level, tabindex: 0, role: "button",
      onclick: () => select(s.section_id),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(s.section_id); } },
    }, svg("title", {}, s.section_id));
    if (poly.length > 1) g.append(svg("polyline", { class: "border", points: poly.join(" ") }));
    // The level word follows the id for every level above low.
    const word = s.level === "low" ? "" : ` ${s.level.toUpperCase()}`;
    const width = (s.section_id.length + word.length) * LABEL_PX * 0.62;
    const [lx, ly, anchor] = placeLabel(cx, cy, width, placed);
    if (Math.hypot(lx - cx, ly - 5 - cy) > 20) {
      g.append(svg("line", { class: "leader", x1: cx, y1: cy, x2: lx, y2: ly - LABEL_PX * 0.35 }));
    }
    g.append(
      svg("circle", { class: "marker", cx, cy, r: 9 }),
      svg("text", { class: "label", x: lx, y: ly, "text-anchor": anchor },
        svg("tspan", { class: "sid" }, s.section_id), svg("tspan", { class: "lvl" }, word)),
    );
    marks.append(g);
  }
  map.replaceChildren(grid, countries, marks);
}

// Greedy label placement: the first candidate position (right, left, then further
// up or down with a leader line) whose box overlaps no marker and no earlier label.
function placeLabel(cx, cy, w, placed) {
  const h = LABEL_PX + 2;
  const candidates = [[cx + 14, cy + 6, "start"], [cx - 14, cy + 6, "end"]];
  for (const d of [1, 2, 3, 4]) {
    for (const sign of [-1, 1]) {
      const y = cy + 6 + sign * d * h;
      candidates.push([cx + 14 + d * 6, y, "start"], [cx - 14 - d * 6, y, "end"]);
    }
  }
  let best = null;
  for (const [x, y, anchor] of candidates) {
    const box = { x0: anchor === "start" ? x : x - w, x1: anchor === "start" ? x + w : x,
      y0: y - LABEL_PX, y1: y + 3 };
    if (box.x0 < 0 || box.x1 > MAP_W) continue;
    const hits = placed.filter((b) => box.x0 < b.x1 && b.x0 < box.x1 && box.y0 < b.y1 && b.y0 < box.y1).length;
    if (!best || hits < best.hits) best = { hits, box, at: [x, y, anchor] };
    if (hits === 0) break;
  }
  if (!best) return [cx - 14, cy + 6, "end"];
  placed.push(best.box);
  return best.at;
}

function renderAlerts() {
  const firing = [...state.alerts.values()]
    .filter((a) => a.status === "firing")
    .sort((a, b) => (LEVEL_RANK[b.severity] - LEVEL_RANK[a.severity])
      || (a.started_at < b.started_at ? -1 : a.started_at > b.started_at ? 1 : 0));
  $("#alerts-count").textContent = firing.length;
  $("#alerts-count").dataset.count = firing.length;
  $("#alerts-empty").hidden = firing.length > 0;
  $("#alerts").replaceChildren(...firing.map((a) => el("li", {
    class: "alert", "data-alert-id": a.alert_id, "data-severity": a.severity,
    "data-level": a.severity, "data-section": a.section_id, tabindex: 0,
    "data-acked": a.acked ? "true" : "false",
    // A country-level alert (`LV-ALL`, report discrepancies) has no section to open.
    onclick: () => { if (state.sections.has(a.section_id)) select(a.section_id); },
    onkeydown: (e) => { if (e.key === "Enter" && state.sections.has(a.section_id)) select(a.section_id); },
  },
  el("div", { class: "alert-head" }, levelBadge(a.severity),
    el("span", { class: "alert-section" }, a.section_id),
    el("span", { class: "since" }, "since ", agoSpan(a.started_at))),
  el("div", { class: "summary" }, a.summary),
  el("div", { class: "muted small" }, `${a.rule} · ${a.value} vs ${a.threshold} in ${a.window}`),
  el("div", { class: "ack-row" },
    el("button", {
      type: "button", class: "ack-button",
      "aria-label": `Acknowledge the ${a.severity} alert on ${a.section_id}`,
      onclick: (e) => { e.stopPropagation(); openAck(a.alert_id); },
      onkeydown: (e) => e.stopPropagation(),
    }, a.acked ? "Ack again" : "Ack"),
    a.acked ? el("span", { class: "acked" }, ...ackText(a)) : null))));

  $("#transitions").replaceChildren(...state.transitions.map((t) => el("li", {
    "data-alert-id": t.alert_id, "data-status": t.status, "data-seq": t.seq,
  },
  el("time", { datetime: t.updated_at, title: t.updated_at }, clock(new Date(t.updated_at))),
  el("span", { class: `status ${t.status}` }, t.status),
  levelBadge(t.severity),
  el("span", { class: "summary" }, t.summary))));
}

function renderDetail() {
  const panel = $("#detail");
  panel.hidden = !state.selected;
  if (!state.selected) return;
  panel.dataset.section = state.selected;
  const base = state.sections.get(state.selected) || {};
  const d = state.detail;
  $("#detail-title").replaceChildren(
    el("span", { class: "id" }, state.selected), ` · ${base.name || ""} `,
    base.country ? el("span", { class: "muted" }, `(${base.country}–${base.neighbour || "BY"})`) : "",
    " ", levelBadge((d && d.level) || base.level || "low"));
  const body = $("#detail-body");
  if (!d) return body.replaceChildren(el("p", { class: "muted" }, "loading…"));
  if (d.error) return body.replaceChildren(el("p", { class: "error" }, d.error));

  const counts = el("table", { class: "counts" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", { class: "num" }, "1 h"),
      el("th", { class: "num" }, "24 h"), el("th", { class: "num" }, "7 d"))),
    el("tbody", {}, KINDS.map((k) => el("tr", { "data-kind": k },
      el("th", { scope: "row" }, k.replace("_", " ")),
      ...["1h", "24h", "7d"].map((w) => num((d[`counts_${w}`] || {})[k] || 0, w))))));
  body.replaceChildren(
    el("div", { class: "detail-meta" }, "last event ", agoSpan(d.last_event_at),
      (d.firing_alerts || []).length ? ` · firing: ${d.firing_alerts.join(", ")}` : ""),
    el("div", { class: "detail-grid" }, hourlyChart(d.hourly || []), counts));
}

// 24 grouped bars, oldest hour on the left: crossing attempts and detections.
function hourlyChart(hourly) {
  let points = hourly;
  if (!points.length) {
    const now = new Date();
    now.setMinutes(0, 0, 0);
    points = Array.from({ length: 24 }, (_, i) => ({
      start: new Date(now.getTime() - (23 - i) * 3_600_000).toISOString(), counts: {},
    }));
  }
  const series = [["crossing_attempt", "crossing attempts"], ["detection", "detections"]];
  const W = 640; const H = 240; const L = 44; const R = 8; const T = 16; const B = 30;
  const max = Math.max(1, ...points.flatMap((p) => series.map(([k]) => (p.counts || {})[k] || 0)));
  const top = niceMax(max);
  const slot = (W - L - R) / points.length;
  const bw = Math.max(2, (slot - 4) / 2);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const chart = svg("svg", { id: "hourly", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "Crossing attempts and detections per hour, last 24 hours" });
  for (const v of [0, top / 2, top]) {
    chart.append(svg("line", { class: "tick", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      svg("text", { class: "axis", x: L - 6, y: y(v) + 4, "text-anchor": "end" }, Math.round(v)));
  }
  points.forEach((p, i) => {
    const x0 = L + i * slot + 2;
    series.forEach(([kind, label], j) => {
      const v = (p.counts || {})[kind] || 0;
      chart.append(svg("rect", {
        class: `bar ${kind}`, "data-kind": kind, "data-hour": p.start, "data-value": v,
        x: x0 + j * bw, y: y(v), width: bw, height: Math.max(0, y(0) - y(v)),
      }, svg("title", {}, `${hourLabel(p.start)}:00 — ${v} ${label}`)));
    });
    if (i % 3 === 0 || i === points.length - 1) {
      chart.append(svg("text", { class: "axis", x: x0 + bw, y: H - 10, "text-anchor": "middle" },
        `${hourLabel(p.start)}h`));
    }
  });
  const legend = el("div", { class: "chart-legend" },
    series.map(([kind, label]) => el("span", { class: `key ${kind}` }, el("i", {}), label)));
  return el("figure", { class: "chart" }, chart, legend);
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function ackText(a) {
  const last = state.lastAck.get(a.alert_id);
  const more = a.acks > 1 ? ` (${a.acks} acks)` : "";
  if (!last) return [`acknowledged${more}`];
  const comment = last.comment ? `: “${last.comment}”` : "";
  return [`acknowledged by ${last.by}${comment}${more} · `, agoSpan(last.acked_at)];
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
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sort(); });
  }
  const tbody = $("#sections tbody");
  tbody.addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-section]");
    if (row) select(row.dataset.section);
  });
  tbody.addEventListener("keydown", (e) => {
    const row = e.target.closest("tr[data-section]");
    if (row && e.key === "Enter") select(row.dataset.section);
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
