// The border map: Natural Earth 1:50m country outlines (npm world-atlas, vendored,
// decoded by the vendored topojson-client, global `topojson`), the EU–Belarus border
// line, and the catalogue's sections coloured by level with the level written in
// each label. Lambert conformal conic (standard parallels 52° and 56° N, the span of
// the border), written out below: one projection is all the map needs, so no d3-geo.
// Zoom and pan: wheel, drag, the +/−/fit buttons, and the keys + − 0 and arrows.

const ATLAS_URL = "vendor/world-atlas/countries-50m.json";
export const BELARUS = "112";
// ISO 3166-1 numeric ids of the EU countries on the Belarus border (world-atlas ids).
export const EU_BORDER = new Map([["428", "LV"], ["440", "LT"], ["616", "PL"]]);
const NAMES = [ // where the country names go [lat, lon]
  ["LATVIA", 56.75, 25.3], ["LITHUANIA", 55.25, 23.9], ["POLAND", 51.95, 22.1],
  ["BELARUS", 53.6, 27.3], ["RUSSIA", 54.75, 21.35], ["UKRAINE", 51.3, 27.0],
  ["ESTONIA", 58.3, 26.2], ["RUSSIA", 56.9, 29.5],
];
// Only polygons reaching into this box are drawn (lon, lat): the rest is off-map.
const AREA = { lon0: 8, lon1: 42, lat0: 44, lat1: 62 };
export const W = 600;
export const H = 720;
const PAD = 24;
// Labels are 12-17 screen pixels high whatever the map's width (the SVG scales):
// 17 on a wall screen's map, 12 on a laptop's, where zoom spreads them out.
const labelScreenPx = (width) => Math.min(17, Math.max(12, width / 30));
const MIN_K = 1;
const MAX_K = 24;

const rad = Math.PI / 180;
const PHI1 = 52 * rad;
const PHI2 = 56 * rad;
const PHI0 = 54 * rad;
const LAM0 = 25 * rad;
const t = (phi) => Math.tan(Math.PI / 4 + phi / 2);
const N = Math.log(Math.cos(PHI1) / Math.cos(PHI2)) / Math.log(t(PHI2) / t(PHI1));
const F = (Math.cos(PHI1) * t(PHI1) ** N) / N;
const RHO0 = F / t(PHI0) ** N;

// Lambert conformal conic on the sphere: [lon, lat] in degrees -> [x, y], y up.
export function lcc(lon, lat) {
  const rho = F / t(lat * rad) ** N;
  const theta = N * (lon * rad - LAM0);
  return [rho * Math.sin(theta), RHO0 - rho * Math.cos(theta)];
}

const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export class BorderMap {
  constructor(root, { onSelect, onError }) {
    this.root = root;
    this.onSelect = onSelect;
    this.onError = onError;
    this.view = { k: 1, x: 0, y: 0 };
    this.base = null;        // [lon, lat] -> base SVG coordinates (zoom 1)
    this.sections = [];
    this.polylines = new Map();
    this.selected = null;
    this.ready = false;
    this.geo = svg("g", { class: "geo" });
    this.overlay = svg("g", { class: "overlay" });
    this.root.setAttribute("viewBox", `0 0 ${W} ${H}`);
    this.root.replaceChildren(svg("rect", { class: "sea", x: 0, y: 0, width: W, height: H }),
      this.geo, this.overlay);
    this.wire();
    new ResizeObserver(() => this.draw()).observe(this.root);
  }

  async load() {
    let topo;
    try {
      const resp = await fetch(ATLAS_URL, { cache: "force-cache" });
      if (!resp.ok) throw new Error(`${ATLAS_URL}: HTTP ${resp.status}`);
      topo = await resp.json();
    } catch (err) {
      this.onError(`The country outlines could not be loaded (${err.message}); sections are drawn without them.`);
      this.fit([]);
      this.ready = true;
      this.draw();
      return;
    }
    const countries = topojson.feature(topo, topo.objects.countries).features;
    const border = topojson.mesh(topo, topo.objects.countries, (a, b) => a !== b
      && ((a.id === BELARUS && EU_BORDER.has(b.id)) || (b.id === BELARUS && EU_BORDER.has(a.id))));
    this.fit(border.coordinates.flat());
    const group = svg("g", { class: "countries" });
    for (const f of countries) {
      const d = this.pathOf(f.geometry);
      if (!d) continue;
      const eu = EU_BORDER.get(f.id);
      group.append(svg("path", {
        class: f.id === BELARUS ? "country by" : eu ? "country eu" : "country",
        "data-country": eu || (f.id === BELARUS ? "BY" : f.properties.name), d,
      }));
    }
    const line = svg("path", { class: "eu-by-border", "data-border": "EU-BY", d: this.linesOf(border.coordinates) });
    this.geo.replaceChildren(group, line);
    this.ready = true;
    this.draw();
  }

  // Fit the base projection to the EU–Belarus border (or the sections), padded.
  fit(lonlats) {
    const pts = lonlats.length ? [...lonlats] : [];
    for (const s of this.sections) pts.push([s.centre.lon, s.centre.lat]);
    if (!pts.length) pts.push([23.5, 51.5], [28.2, 56.2]);
    const xy = pts.map(([lon, lat]) => lcc(lon, lat));
    const xs = xy.map((p) => p[0]);
    const ys = xy.map((p) => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    // Room for labels east and west of the line, and the countries beside it.
    const mx = (x1 - x0) * 0.45 + 1e-3;
    const my = (y1 - y0) * 0.08 + 1e-3;
    const scale = Math.min((W - 2 * PAD) / (x1 - x0 + 2 * mx), (H - 2 * PAD) / (y1 - y0 + 2 * my));
    const cx = (x0 + x1) / 2;
    const cy = (y0 + y1) / 2;
    this.base = (lon, lat) => {
      const [x, y] = lcc(lon, lat);
      return [W / 2 + (x - cx) * scale, H / 2 - (y - cy) * scale];
    };
  }

  ring(coords) {
    let d = "";
    coords.forEach(([lon, lat], i) => {
      const [x, y] = this.base(lon, lat);
      d += `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    });
    return d;
  }

  pathOf(geometry) {
    if (!geometry) return "";
    const polys = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
    let d = "";
    for (const poly of polys) {
      const outer = poly[0];
      const lons = outer.map((p) => p[0]);
      const lats = outer.map((p) => p[1]);
      if (Math.max(...lons) < AREA.lon0 || Math.min(...lons) > AREA.lon1
        || Math.max(...lats) < AREA.lat0 || Math.min(...lats) > AREA.lat1) continue;
      for (const r of poly) d += `${this.ring(r)}Z`;
    }
    return d;
  }

  linesOf(lines) {
    return lines.map((l) => this.ring(l)).join("");
  }

  // Sections (catalogue order), their polylines ([[lat, lon], ...]) and the selection.
  update(sections, polylines, selected) {
    const first = !this.sections.length && sections.length;
    this.sections = sections.filter((s) => s.centre);
    this.polylines = polylines;
    this.selected = selected;
    if (first && !this.ready && !this.base) this.fit([]);
    this.draw();
  }

  screen(lat, lon) {
    const [x, y] = this.base(lon, lat);
    return [x * this.view.k + this.view.x, y * this.view.k + this.view.y];
  }

  draw() {
    if (!this.base) return;
    const { k, x, y } = this.view;
    // SVG units per screen pixel, so labels keep their size on a wall screen and a laptop.
    const width = this.root.getBoundingClientRect().width || W;
    const size = (labelScreenPx(width) * W) / width;
    this.overlay.setAttribute("font-size", size.toFixed(2));
    this.geo.setAttribute("transform", `translate(${x.toFixed(2)},${y.toFixed(2)}) scale(${k.toFixed(4)})`);
    this.root.dataset.zoom = k.toFixed(2);
    const focused = document.activeElement?.closest?.("#map g.sec")?.dataset.section;
    const names = svg("g", { class: "names", "aria-hidden": "true" });
    for (const [name, lat, lon] of NAMES) {
      const [nx, ny] = this.screen(lat, lon);
      // Country names sit under the labels and yield to them (drawn, not placed).
      if (nx > 0 && nx < W && ny > 0 && ny < H) names.append(svg("text", { x: nx, y: ny, "text-anchor": "middle" }, name));
    }
    const marks = svg("g", { class: "marks" });
    const at = this.sections.map((s) => this.screen(s.centre.lat, s.centre.lon));
    const placed = at.map(([cx, cy]) => ({ x0: cx - 10, x1: cx + 10, y0: cy - 10, y1: cy + 10 }));
    this.sections.forEach((s, i) => {
      const [cx, cy] = at[i];
      const line = (this.polylines.get(s.section_id) || []).map(([la, lo]) => this.screen(la, lo).map((v) => v.toFixed(1)).join(","));
      const label = `${s.section_id} ${s.level.toUpperCase()}`;
      const g = svg("g", {
        class: s.section_id === this.selected ? "sec selected" : "sec",
        "data-section": s.section_id, "data-level": s.level, tabindex: 0, role: "button",
        "aria-pressed": s.section_id === this.selected ? "true" : "false",
        // The accessible name starts with the visible label (WCAG 2.5.3).
        "aria-label": `${label}: ${s.name}, level ${s.level}; open the section detail`,
      }, svg("title", {}, s.title || label));
      if (line.length > 1) {
        g.append(svg("polyline", { class: "casing", points: line.join(" ") }),
          svg("polyline", { class: "line", points: line.join(" ") }));
      }
      const [lx, ly, anchor] = placeLabel(cx, cy, label.length * size * 0.66, size, placed);
      if (Math.hypot(lx - cx, ly - 0.3 * size - cy) > 1.4 * size) {
        g.append(svg("line", { class: "leader", x1: cx, y1: cy, x2: lx, y2: ly - size * 0.35 }));
      }
      g.append(svg("circle", { class: "marker", cx, cy, r: 8 }),
        svg("text", { class: "label", x: lx, y: ly, "text-anchor": anchor },
          svg("tspan", { class: "sid" }, s.section_id), " ",
          svg("tspan", { class: "lvl" }, s.level.toUpperCase())));
      marks.append(g);
    });
    this.overlay.replaceChildren(names, marks);
    if (focused) this.overlay.querySelector(`g.sec[data-section="${CSS.escape(focused)}"]`)?.focus();
  }

  // Zoom by `factor` about the SVG point (px, py), clamped; then pan within bounds.
  zoom(factor, px = W / 2, py = H / 2) {
    const v = this.view;
    const k = Math.min(MAX_K, Math.max(MIN_K, v.k * factor));
    const f = k / v.k;
    this.view = { k, x: px - (px - v.x) * f, y: py - (py - v.y) * f };
    this.pan(0, 0);
  }

  pan(dx, dy) {
    const v = this.view;
    // Keep part of the base frame on screen: never pan the border out of sight.
    const minX = W * (1 - v.k) - W * 0.4;
    const minY = H * (1 - v.k) - H * 0.4;
    this.view = {
      k: v.k,
      x: Math.min(W * 0.4, Math.max(minX, v.x + dx)),
      y: Math.min(H * 0.4, Math.max(minY, v.y + dy)),
    };
    this.draw();
  }

  reset() {
    this.view = { k: 1, x: 0, y: 0 };
    this.draw();
  }

  // SVG coordinates of a pointer event.
  point(e) {
    const r = this.root.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * W, ((e.clientY - r.top) / r.height) * H];
  }

  wire() {
    const root = this.root;
    root.addEventListener("wheel", (e) => {
      e.preventDefault();
      const [px, py] = this.point(e);
      this.zoom(e.deltaY < 0 ? 1.25 : 0.8, px, py);
    }, { passive: false });
    let drag = null;
    root.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { id: e.pointerId, at: this.point(e), moved: 0, sec: e.target.closest("g.sec") };
    });
    root.addEventListener("pointermove", (e) => {
      if (!drag || drag.id !== e.pointerId) return;
      const p = this.point(e);
      const dx = p[0] - drag.at[0];
      const dy = p[1] - drag.at[1];
      drag.moved += Math.abs(dx) + Math.abs(dy);
      drag.at = p;
      if (drag.moved > 4) {
        if (!root.hasPointerCapture(e.pointerId)) root.setPointerCapture(e.pointerId);
        root.classList.add("dragging");
        this.pan(dx, dy);
      }
    });
    const end = (e) => {
      if (!drag || drag.id !== e.pointerId) return;
      const { moved, sec } = drag;
      drag = null;
      root.classList.remove("dragging");
      if (moved <= 4 && sec && e.type === "pointerup") this.onSelect(sec.dataset.section);
    };
    root.addEventListener("pointerup", end);
    root.addEventListener("pointercancel", end);
    root.addEventListener("keydown", (e) => {
      const step = 40;
      const keys = {
        "+": () => this.zoom(1.5), "=": () => this.zoom(1.5), "-": () => this.zoom(1 / 1.5),
        _: () => this.zoom(1 / 1.5), 0: () => this.reset(),
        ArrowLeft: () => this.pan(step, 0), ArrowRight: () => this.pan(-step, 0),
        ArrowUp: () => this.pan(0, step), ArrowDown: () => this.pan(0, -step),
      };
      const sec = e.target.closest?.("g.sec");
      if (sec && (e.key === "Enter" || e.key === " ")) {
        e.preventDefault();
        this.onSelect(sec.dataset.section);
        return;
      }
      if (e.ctrlKey || e.metaKey || e.altKey || !(e.key in keys)) return;
      e.preventDefault();
      keys[e.key]();
    });
  }
}

// Greedy label placement: the first candidate (right, left, then further up or down
// with a leader line) whose box overlaps no marker and no earlier label.
function placeLabel(cx, cy, w, size, placed) {
  const h = size * 1.15;
  const dx = size * 0.8;
  const base = cy + size * 0.38;
  const candidates = [[cx + dx, base, "start"], [cx - dx, base, "end"]];
  for (const d of [1, 2, 3, 4]) {
    for (const sign of [-1, 1]) {
      const y = base + sign * d * h;
      candidates.push([cx + dx + d * size * 0.4, y, "start"], [cx - dx - d * size * 0.4, y, "end"]);
    }
  }
  let best = null;
  for (const [x, y, anchor] of candidates) {
    const box = { x0: anchor === "start" ? x : x - w, x1: anchor === "start" ? x + w : x, y0: y - size * 0.95, y1: y + size * 0.25 };
    const off = box.x0 < 0 || box.x1 > W ? 100 : 0;
    const hits = off + placed.filter((b) => box.x0 < b.x1 && b.x0 < box.x1 && box.y0 < b.y1 && b.y0 < box.y1).length;
    if (!best || hits < best.hits) best = { hits, box, at: [x, y, anchor] };
    if (hits === 0) break;
  }
  placed.push(best.box);
  return best.at;
}
