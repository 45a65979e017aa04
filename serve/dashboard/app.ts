/**
 * The dashboard's browser script (an ES module, loaded by index.html after uPlot's iife, which defines the global
 * `uPlot`). Two views, chosen by the URL's hash: every device with its sensors' latest values and a sparkline of the
 * last day (`#/`), and one device with a chart per sensor over a chosen range (`#/device/<id>`). Both ask the API
 * again every `?refresh=<seconds>` (default 5).
 */

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

type Params = Record<string, string | number>;
type RangeKey = "1h" | "24h" | "7d" | "30d" | "custom";

const query = new URLSearchParams(location.search);
const REFRESH_MS = Math.max(0.2, Number(query.get("refresh") || 5)) * 1000;
const PAGE = 60;
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

/** Where the token lives: this tab's session only, so closing the tab forgets it. */
const TOKEN_KEY = "telemetry-token";
let tokenAsked: Promise<string> | undefined;

/**
 * Asks for the API's token once (every request that got 401 meanwhile waits for the same answer), with a form over
 * the page; `wrong` says the last one was refused.
 */
function askToken(wrong: boolean): Promise<string> {
  tokenAsked ??= new Promise<string>((resolve) => {
    const input = el("input", {
      type: "password",
      name: "token",
      autocomplete: "current-password",
      required: "",
    });
    const form = el("form", { id: "token-form", class: "token-form" }, [
      el("p", { text: wrong ? "That token was refused. Token:" : "This server needs a token:" }),
      input,
      el("button", { type: "submit", text: "Sign in" }),
    ]);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (token === "") return;
      sessionStorage.setItem(TOKEN_KEY, token);
      form.remove();
      tokenAsked = undefined;
      resolve(token);
    });
    document.body.append(form);
    input.focus();
  });
  return tokenAsked;
}

async function api<T>(path: string, params: Params = {}): Promise<T> {
  const q = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
  let token = sessionStorage.getItem(TOKEN_KEY);
  for (;;) {
    const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
    const r = await fetch(`/api/${path}?${q.toString()}`, { headers });
    if (r.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      token = await askToken(token !== null);
      continue;
    }
    if (!r.ok) {
      const body = (await r.json()) as { error?: string };
      throw new Error(body.error || r.statusText);
    }
    return (await r.json()) as T;
  }
}

function num(v: number | null | undefined): string {
  if (v === null || v === undefined) return "";
  return String(Number(Number(v).toPrecision(6)));
}

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

function byDevice(rows: readonly Latest[]): Map<string, Latest[]> {
  const devices = new Map<string, Latest[]>();
  for (const r of rows) {
    const list = devices.get(r.device_id);
    if (list) list.push(r);
    else devices.set(r.device_id, [r]);
  }
  return devices;
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

// Overview: every device, its sensors' latest values and a sparkline of the last day.
function overview(): void {
  main.textContent = "";
  const search = el("input", {
    type: "search",
    placeholder: "filter devices",
    value: state.filter,
    "aria-label": "filter devices",
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
  let rows: readonly Latest[] = [];

  function draw(): void {
    const devices = byDevice(rows);
    const ids = Array.from(devices.keys()).filter((id) => id.indexOf(state.filter) !== -1);
    count.textContent = `${ids.length} of ${devices.size} devices`;
    const wanted = ids.slice(0, state.shown);
    const cards = new Map<string | undefined, HTMLElement>();
    for (const c of Array.from(grid.children) as HTMLElement[]) cards.set(c.dataset.device, c);
    wanted.forEach((id, i) => {
      const card = cards.get(id) ?? newCard(id);
      cards.delete(id);
      for (const r of devices.get(id) ?? []) updateSensor(card, r);
      if (grid.children[i] !== card) grid.insertBefore(card, grid.children[i] ?? null);
    });
    for (const c of cards.values()) c.remove();
    more.style.display = ids.length > state.shown ? "" : "none";
    if (devices.size === 0)
      grid.replaceChildren(el("p", { class: "empty", text: "No readings stored yet." }));
  }
  function newCard(id: string): HTMLElement {
    const link = el("a", { href: `#/device/${encodeURIComponent(id)}`, text: id });
    return el("section", { class: "card", "data-device": id }, [
      el("h2", {}, [link]),
      el("div", { class: "sensors" }),
    ]);
  }
  function updateSensor(card: HTMLElement, r: Latest): void {
    const list = child(card, ".sensors");
    let row = list.querySelector<HTMLElement>(`[data-sensor="${r.sensor}"]`);
    if (!row) {
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("class", "spark");
      svg.setAttribute("preserveAspectRatio", "none");
      row = el("div", { class: "sensor", "data-sensor": r.sensor }, [
        el("span", { class: "name", text: r.sensor }),
        el("span", { class: "value" }),
        svg,
        el("span", { class: "age" }),
      ]);
      row.dataset.device = r.device_id;
      list.appendChild(row);
      sparkObserver.observe(row);
    }
    child(row, ".value").textContent = num(r.value) + (r.unit ? ` ${r.unit}` : "");
    child(row, ".age").textContent = ago(r.ts);
    row.dataset.ts = String(r.ts);
  }
  function refresh(): Promise<void> {
    return api<Latest[]>("latest").then((r) => {
      rows = r;
      draw();
      setStatus(`updated ${new Date().toLocaleTimeString()}`, false);
    }, fail);
  }
  search.addEventListener("input", () => {
    state.filter = search.value.trim();
    state.shown = PAGE;
    draw();
  });
  more.addEventListener("click", () => {
    state.shown += PAGE;
    draw();
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
