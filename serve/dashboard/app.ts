/**
 * The dashboard's browser script (an ES module, loaded by index.html after uPlot's iife, which defines the global
 * `uPlot`). Two views, chosen by the URL's hash: a page of devices (`/api/devices?limit=&match=`, searched on the
 * server, silent ones marked) with their sensors' latest values and a sparkline of the last day (`#/`), and one
 * device with a chart per sensor over a chosen range (`#/device/<id>`). Both ask again every `?refresh=<s>` (5).
 */

import { api, apiPage, type Params } from "./api.js";

/** A row of `/api/latest`. */
interface Latest {
  readonly device_id: string;
  readonly sensor: string;
  readonly ts: number;
  readonly value: number | null;
  readonly unit?: string | null;
}

/** A point of `/api/series`: a raw reading when they fit, else a bucket starting at `ts`. */
type Point =
  | { readonly ts: number; readonly value: number }
  | { readonly ts: number; readonly min: number; readonly max: number; readonly mean: number };

/** An entry of `/api/devices`. */
interface Device {
  readonly device_id: string;
  readonly last_seen: number;
  readonly silent: boolean;
  readonly sensors: readonly { sensor: string; unit: string | null; last_ts: number; last_value: number }[];
}

type RangeKey = "1h" | "24h" | "7d" | "30d" | "custom";

const query = new URLSearchParams(location.search);
const REFRESH_MS = Math.max(0.2, Number(query.get("refresh") || 5)) * 1000;
const PAGE = 60; // cards a page adds: the overview holds the pages asked for, whatever the fleet's size
const SEARCH_DELAY_MS = 200; // a search is asked once typing pauses this long
const SPARK_POINTS = 60;
const SPARK_TTL_MS = 60_000;
const CHART_HEIGHT = 220;
const RANGES: readonly (readonly [RangeKey, string])[] = [
  ["1h", "1 h"],
  ["24h", "24 h"],
  ["7d", "7 d"],
  ["30d", "30 d"],
  ["custom", "custom"],
];
const main = document.getElementById("main")!;
const status = document.getElementById("status")!;
const state = { shown: PAGE, filter: "", range: "24h" as RangeKey, customFrom: "", customTo: "" };
let timer: ReturnType<typeof setTimeout> | undefined;
let charts: uPlot[] = [];
/** The chart drawn in each device panel, kept to update it in place. */
const chartOf = new WeakMap<Element, uPlot>();
const sparks = new Map<string, { readonly at: number; readonly points: readonly Point[] }>();
let observer: IntersectionObserver | undefined;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  children: readonly (Node | null)[] = [],
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.appendChild(c);
  return e;
}

/** The child of `parent` matching `selector`, which the page itself created. */
function child<E extends Element = HTMLElement>(parent: ParentNode, selector: string): E {
  return parent.querySelector<E>(selector)!;
}

const num = (v: number | null | undefined) =>
  v === null || v === undefined ? "" : String(Number(Number(v).toPrecision(6)));

function ago(ts: number): string {
  const s = Math.max(0, Math.round((Date.now() - ts) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function setStatus(text: string, stale: boolean): void {
  status.textContent = text;
  status.className = stale ? "status stale" : "status";
}

/** Calls `fn` again REFRESH_MS after its last call settled, whether it succeeded or not. */
function schedule(fn: () => Promise<unknown>): void {
  clearTimeout(timer);
  timer = setTimeout(() => {
    fn().then(
      () => schedule(fn),
      () => schedule(fn),
    );
  }, REFRESH_MS);
}

function fail(err: Error): void {
  setStatus(`error: ${err.message} (retrying)`, true);
}

// Overview: a page of devices, their sensors' latest values and a sparkline of the last day, silent ones marked.
function overview(): void {
  main.textContent = "";
  const search = el("input", {
    type: "search",
    placeholder: "devices starting with",
    value: state.filter,
    "aria-label": "devices starting with",
  });
  const count = el("span", { class: "count" });
  const grid = el("div", { class: "grid", id: "devices" });
  const more = el("button", { class: "more", text: "show more" });
  main.appendChild(el("div", { class: "toolbar" }, [search, count]));
  main.appendChild(grid);
  main.appendChild(more);
  observer?.disconnect();
  const sparkObserver = new IntersectionObserver((entries) => {
    for (const e of entries) if (e.isIntersecting) spark(e.target as HTMLElement);
  });
  observer = sparkObserver;
  let asked = 0; // answers to an older question (the search changed since) are dropped

  function draw(devices: readonly Device[], hasMore: boolean): void {
    const silent = devices.filter((d) => d.silent).length;
    count.textContent = `${devices.length}${hasMore ? "+" : ""} devices${silent > 0 ? `, ${silent} silent` : ""}`;
    const cards = new Map<string | undefined, HTMLElement>();
    for (const c of Array.from(grid.children) as HTMLElement[]) cards.set(c.dataset.device, c);
    devices.forEach((d, i) => {
      const card = cards.get(d.device_id) ?? newCard(d.device_id);
      cards.delete(d.device_id);
      card.classList.toggle("silent", d.silent);
      child(card, ".silence").textContent = d.silent ? `silent, last seen ${ago(d.last_seen)}` : "";
      for (const s of d.sensors) updateSensor(card, d.device_id, s);
      if (grid.children[i] !== card) grid.insertBefore(card, grid.children[i] ?? null);
    });
    for (const c of cards.values()) c.remove();
    more.style.display = hasMore ? "" : "none";
    if (devices.length === 0) grid.replaceChildren(el("p", { class: "empty", text: "No devices." }));
  }
  function newCard(id: string): HTMLElement {
    const link = el("a", { href: `#/device/${encodeURIComponent(id)}`, text: id });
    return el("section", { class: "card", "data-device": id }, [
      el("h2", {}, [link]),
      el("p", { class: "silence" }),
      el("div", { class: "sensors" }),
    ]);
  }
  function updateSensor(card: HTMLElement, device: string, s: Device["sensors"][number]): void {
    const list = child(card, ".sensors");
    let row = list.querySelector<HTMLElement>(`[data-sensor="${s.sensor}"]`);
    if (!row) {
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("class", "spark");
      svg.setAttribute("preserveAspectRatio", "none");
      row = el("div", { class: "sensor", "data-sensor": s.sensor }, [
        el("span", { class: "name", text: s.sensor }),
        el("span", { class: "value" }),
        svg,
        el("span", { class: "age" }),
      ]);
      row.dataset.device = device;
      list.appendChild(row);
      sparkObserver.observe(row);
    }
    child(row, ".value").textContent = num(s.last_value) + (s.unit ? ` ${s.unit}` : "");
    child(row, ".age").textContent = ago(s.last_ts);
    row.dataset.ts = String(s.last_ts);
  }
  /** The first `state.shown` devices starting with the search, in one question. */
  function refresh(): Promise<void> {
    const mine = ++asked;
    const params: Params = { limit: state.shown };
    if (state.filter) params.match = state.filter;
    return apiPage<Device[]>("devices", params).then(({ body, more }) => {
      if (mine !== asked) return;
      draw(body, more);
      setStatus(`updated ${new Date().toLocaleTimeString()}`, false);
    }, fail);
  }
  let typing: ReturnType<typeof setTimeout> | undefined;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.filter = search.value.trim();
      state.shown = PAGE;
      void refresh();
    }, SEARCH_DELAY_MS);
  });
  more.addEventListener("click", () => {
    state.shown += PAGE;
    void refresh();
  });
  refresh();
  schedule(refresh);
}

function spark(row: HTMLElement): void {
  const device = row.dataset.device ?? "";
  const sensor = row.dataset.sensor ?? "";
  const key = `${device}/${sensor}`;
  const cached = sparks.get(key);
  if (cached && Date.now() - cached.at < SPARK_TTL_MS) {
    drawSpark(row, cached.points);
    return;
  }
  api<Point[]>("series", { device, sensor, from: "-24h", points: SPARK_POINTS }).then(
    (points) => {
      sparks.set(key, { at: Date.now(), points });
      drawSpark(row, points);
    },
    () => undefined,
  );
}

function drawSpark(row: HTMLElement, points: readonly Point[]): void {
  const svg = row.querySelector("svg");
  if (!svg || points.length < 2) return;
  const ys = points.map((p) => ("value" in p ? p.value : p.mean));
  const x0 = points[0]!.ts;
  const x1 = points[points.length - 1]!.ts;
  const lo = Math.min(...ys);
  const hi = Math.max(...ys);
  const coords = points.map((p, i) => {
    const x = x1 === x0 ? 0 : ((p.ts - x0) / (x1 - x0)) * 100;
    const y = hi === lo ? 14 : 26 - ((ys[i]! - lo) / (hi - lo)) * 24;
    return `${x.toFixed(2)},${y.toFixed(2)}`;
  });
  svg.setAttribute("viewBox", "0 0 100 28");
  svg.innerHTML = `<polyline points="${coords.join(" ")}"></polyline>`;
}

// One device: a chart per sensor over the chosen range.
function device(id: string): void {
  main.textContent = "";
  charts = [];
  const title = el("h2", { text: id });
  const picker = el("div", { class: "toolbar range" }, [el("a", { href: "#/", text: "all devices" })]);
  const from = el("input", { type: "datetime-local", "aria-label": "from" });
  const to = el("input", { type: "datetime-local", "aria-label": "to" });
  const apply = el("button", { text: "apply" });
  const custom = el("div", { class: `custom${state.range === "custom" ? " open" : ""}` }, [
    from,
    el("span", { text: "to" }),
    to,
    apply,
  ]);
  from.value = state.customFrom;
  to.value = state.customTo;
  for (const [key, label] of RANGES) {
    const b = el("button", { "data-range": key, text: label });
    if (key === state.range) b.classList.add("active");
    b.addEventListener("click", () => {
      state.range = key;
      for (const x of picker.querySelectorAll("button[data-range]")) x.classList.toggle("active", x === b);
      custom.classList.toggle("open", key === "custom");
      if (key !== "custom") refresh();
    });
    picker.appendChild(b);
  }
  apply.addEventListener("click", () => {
    state.customFrom = from.value;
    state.customTo = to.value;
    refresh();
  });
  const panels = el("div", { id: "charts" });
  main.appendChild(title);
  main.appendChild(picker);
  main.appendChild(custom);
  main.appendChild(panels);

  function range(): Params {
    if (state.range !== "custom") return { from: `-${state.range}` };
    const r: Params = {};
    if (state.customFrom) r.from = new Date(state.customFrom).toISOString();
    if (state.customTo) r.to = new Date(state.customTo).toISOString();
    return r;
  }
  function panelFor(r: Latest): HTMLElement {
    let p = panels.querySelector<HTMLElement>(`[data-sensor="${r.sensor}"]`);
    if (!p) {
      p = el("section", { class: "panel", "data-sensor": r.sensor }, [
        el("h3", {}, [
          el("span", { text: r.sensor }),
          el("span", { class: "mode" }),
          el("span", { class: "latest" }),
        ]),
        el("div", { class: "chart" }),
      ]);
      panels.appendChild(p);
    }
    child(p, ".latest").textContent = `${num(r.value) + (r.unit ? ` ${r.unit}` : "")} \u00b7 ${ago(r.ts)}`;
    return p;
  }
  function plot(panel: HTMLElement, points: readonly Point[], unit: string | null | undefined): void {
    const box = child(panel, ".chart");
    const width = Math.max(240, box.clientWidth);
    const buckets = points.flatMap((p) => ("min" in p ? [p] : []));
    const bands = points.length > 0 && buckets.length === points.length;
    const xs = points.map((p) => p.ts / 1000);
    let data: uPlot.AlignedData;
    let series: uPlot.Series[];
    if (bands) {
      data = [xs, buckets.map((p) => p.max), buckets.map((p) => p.mean), buckets.map((p) => p.min)];
      series = [
        {},
        { label: "max", stroke: "rgba(43,108,176,0.45)", width: 1 },
        { label: "mean", stroke: "#2b6cb0", width: 1.5 },
        { label: "min", stroke: "rgba(43,108,176,0.45)", width: 1 },
      ];
    } else {
      data = [xs, points.map((p) => ("value" in p ? p.value : null))];
      series = [
        {},
        { label: unit || "value", stroke: "#2b6cb0", width: 1.5, points: { show: points.length < 150 } },
      ];
    }
    panel.dataset.points = String(points.length);
    panel.dataset.mode = bands ? "bands" : "raw";
    child(panel, ".mode").textContent =
      points.length === 0
        ? "no readings in range"
        : bands
          ? "min / mean / max per bucket"
          : `${points.length} readings`;
    const old = chartOf.get(panel);
    if (old && old.series.length === series.length) {
      old.setData(data);
      return;
    }
    old?.destroy();
    const opts: uPlot.Options = {
      width,
      height: CHART_HEIGHT,
      series,
      scales: { x: { time: true } },
      legend: { show: true },
      bands: bands ? [{ series: [1, 3], fill: "rgba(43,108,176,0.18)" }] : [],
    };
    const chart = new uPlot(opts, data, box);
    chartOf.set(panel, chart);
    charts.push(chart);
  }
  function refresh(): Promise<void> {
    const r = range();
    return api<Latest[]>("latest", { device: id })
      .then((latest) => {
        if (latest.length === 0) {
          panels.replaceChildren(el("p", { class: "empty", text: "No readings of this device." }));
        }
        const width = Math.max(240, Math.min(2000, panels.clientWidth || 600));
        return Promise.all(
          latest.map((l) => {
            const panel = panelFor(l);
            const q = { device: id, sensor: l.sensor, points: Math.round(width / 2), ...r };
            return api<Point[]>("series", q).then((points) => plot(panel, points, l.unit));
          }),
        );
      })
      .then(() => setStatus(`updated ${new Date().toLocaleTimeString()}`, false), fail);
  }
  refresh();
  schedule(refresh);
}

window.addEventListener("resize", () => {
  for (const c of charts) {
    const w = c.root.parentElement?.clientWidth ?? 0;
    if (w > 0) c.setSize({ width: w, height: CHART_HEIGHT });
  }
});

function route(): void {
  clearTimeout(timer);
  for (const c of charts) c.destroy();
  charts = [];
  const m = /^#\/device\/(.+)$/.exec(location.hash);
  if (m) device(decodeURIComponent(m[1]!));
  else overview();
}
window.addEventListener("hashchange", route);
route();
