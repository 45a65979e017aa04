/**
 * The dashboard `telemetry serve` shows at `/`: one page, a little plain JavaScript and uPlot (served from the
 * package, never a CDN: these machines are often offline). The page, its script and style are kept here as text so
 * the build puts them in dist/ with the rest (the Docker image copies dist/ and node_modules/ only).
 *
 * What it shows: every device with its sensors' latest values and a sparkline of the last day; per device one chart
 * per sensor over a chosen range (1 h, 24 h, 7 d, 30 d or custom), drawn as min/max bands with the mean when
 * `/api/series` answers in buckets; refreshed every few seconds (`?refresh=<seconds>`, default 5).
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

/** A file the app serves as it is. */
export interface Asset {
  readonly body: string | Uint8Array<ArrayBuffer>;
  readonly type: string;
  readonly cache: string;
}

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>telemetry</title>
<link rel="stylesheet" href="/assets/uPlot.min.css">
<link rel="stylesheet" href="/assets/app.css">
</head>
<body>
<header>
  <a href="#/" class="brand">telemetry</a>
  <span id="status" class="status">loading...</span>
</header>
<main id="main"></main>
<script src="/assets/uPlot.iife.min.js"></script>
<script src="/assets/app.js"></script>
</body>
</html>
`;

const CSS = `
:root { --bg: #f6f7f9; --card: #fff; --ink: #1d2330; --muted: #6b7385; --line: #2b6cb0; --band: rgba(43,108,176,0.18);
  --border: #dde1e8; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); }
header { display: flex; align-items: center; justify-content: space-between; gap: 1rem; padding: .6rem 1rem;
  background: var(--ink); color: #fff; position: sticky; top: 0; z-index: 2; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
.status { font-size: .85rem; opacity: .8; }
.status.stale { color: #ffb4a8; opacity: 1; }
main { padding: 1rem; max-width: 1400px; margin: 0 auto; }
.toolbar { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin-bottom: 1rem; }
.toolbar input[type=search] { flex: 1 1 12rem; padding: .45rem .6rem; border: 1px solid var(--border); border-radius: 6px; font: inherit; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: .8rem; }
.card { background: var(--card); border: 1px solid var(--border); border-radius: 8px; padding: .7rem .8rem; }
.card h2 { font-size: 1rem; margin: 0 0 .4rem; word-break: break-all; }
.card h2 a { color: var(--ink); }
.sensor { display: grid; grid-template-columns: 1fr auto; grid-template-areas: "name value" "spark spark" "age age";
  padding: .35rem 0; border-top: 1px solid #eef0f4; }
.sensor .name { grid-area: name; color: var(--muted); }
.sensor .value { grid-area: value; font-variant-numeric: tabular-nums; font-weight: 600; }
.sensor .spark { grid-area: spark; width: 100%; height: 28px; }
.sensor .spark polyline { fill: none; stroke: var(--line); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.sensor .age { grid-area: age; font-size: .75rem; color: var(--muted); }
.more { margin: 1rem auto; display: block; }
button, .range a { font: inherit; padding: .4rem .8rem; border: 1px solid var(--border); border-radius: 6px; background: #fff;
  color: var(--ink); cursor: pointer; text-decoration: none; }
button.active { background: var(--ink); color: #fff; border-color: var(--ink); }
.custom { display: none; gap: .4rem; flex-wrap: wrap; align-items: center; }
.custom.open { display: flex; }
.custom input { font: inherit; padding: .3rem; }
.panel { background: var(--card); border: 1px solid var(--border); border-radius: 8px; padding: .6rem; margin-bottom: .8rem; }
.panel h3 { margin: 0 0 .3rem; font-size: 1rem; display: flex; justify-content: space-between; gap: .5rem; flex-wrap: wrap; }
.panel h3 .latest { font-variant-numeric: tabular-nums; }
.panel .mode { font-size: .75rem; color: var(--muted); font-weight: normal; }
.chart { width: 100%; min-height: 200px; }
.empty { color: var(--muted); padding: 2rem 0; text-align: center; }
@media (max-width: 600px) { main { padding: .6rem; } .grid { grid-template-columns: 1fr; } }
`;

// Plain browser JavaScript (no build step): no template literals here, this file is itself one.
const JS = `
"use strict";
(function () {
  var query = new URLSearchParams(location.search);
  var REFRESH_MS = Math.max(0.2, Number(query.get("refresh") || 5)) * 1000;
  var PAGE = 60;
  var SPARK_POINTS = 60;
  var SPARK_TTL_MS = 60000;
  var RANGES = [["1h", "1 h"], ["24h", "24 h"], ["7d", "7 d"], ["30d", "30 d"], ["custom", "custom"]];
  var main = document.getElementById("main");
  var status = document.getElementById("status");
  var state = { shown: PAGE, filter: "", range: "24h", customFrom: "", customTo: "" };
  var timer = null;
  var charts = [];
  var sparks = new Map();
  var observer = null;

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  function api(path, params) {
    var q = new URLSearchParams(params || {});
    return fetch("/api/" + path + "?" + q.toString()).then(function (r) {
      if (!r.ok) return r.json().then(function (b) { throw new Error(b.error || r.statusText); });
      return r.json();
    });
  }
  function num(v) {
    if (v === null || v === undefined) return "";
    return String(Number(Number(v).toPrecision(6)));
  }
  function ago(ts) {
    var s = Math.max(0, Math.round((Date.now() - ts) / 1000));
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 129600) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  function setStatus(text, stale) {
    status.textContent = text;
    status.className = stale ? "status stale" : "status";
  }
  function byDevice(rows) {
    var devices = new Map();
    rows.forEach(function (r) {
      if (!devices.has(r.device_id)) devices.set(r.device_id, []);
      devices.get(r.device_id).push(r);
    });
    return devices;
  }
  function schedule(fn) {
    clearTimeout(timer);
    timer = setTimeout(function () { fn().then(function () { schedule(fn); }, function () { schedule(fn); }); }, REFRESH_MS);
  }
  function fail(err) {
    setStatus("error: " + err.message + " (retrying)", true);
  }

  // Overview: every device, its sensors' latest values and a sparkline of the last day.
  function overview() {
    main.textContent = "";
    var search = el("input", { type: "search", placeholder: "filter devices", value: state.filter, "aria-label": "filter devices" });
    var count = el("span", { class: "count" });
    var grid = el("div", { class: "grid", id: "devices" });
    var more = el("button", { class: "more", text: "show more" });
    main.appendChild(el("div", { class: "toolbar" }, [search, count]));
    main.appendChild(grid);
    main.appendChild(more);
    if (observer) observer.disconnect();
    observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { if (e.isIntersecting) spark(e.target); });
    });
    var rows = [];
    function draw() {
      var devices = byDevice(rows);
      var ids = Array.from(devices.keys()).filter(function (id) { return id.indexOf(state.filter) !== -1; });
      count.textContent = ids.length + " of " + devices.size + " devices";
      var wanted = ids.slice(0, state.shown);
      var cards = new Map();
      Array.from(grid.children).forEach(function (c) { cards.set(c.dataset.device, c); });
      wanted.forEach(function (id, i) {
        var card = cards.get(id) || newCard(id);
        cards.delete(id);
        devices.get(id).forEach(function (r) { updateSensor(card, r); });
        if (grid.children[i] !== card) grid.insertBefore(card, grid.children[i] || null);
      });
      cards.forEach(function (c) { c.remove(); });
      more.style.display = ids.length > state.shown ? "" : "none";
      if (devices.size === 0) grid.replaceChildren(el("p", { class: "empty", text: "No readings stored yet." }));
    }
    function newCard(id) {
      var link = el("a", { href: "#/device/" + encodeURIComponent(id), text: id });
      var card = el("section", { class: "card", "data-device": id }, [el("h2", {}, [link]), el("div", { class: "sensors" })]);
      return card;
    }
    function updateSensor(card, r) {
      var list = card.querySelector(".sensors");
      var row = list.querySelector('[data-sensor="' + r.sensor + '"]');
      if (!row) {
        var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        svg.setAttribute("class", "spark");
        svg.setAttribute("preserveAspectRatio", "none");
        row = el("div", { class: "sensor", "data-sensor": r.sensor }, [
          el("span", { class: "name", text: r.sensor }), el("span", { class: "value" }), svg, el("span", { class: "age" })]);
        row.dataset.device = r.device_id;
        list.appendChild(row);
        observer.observe(row);
      }
      row.querySelector(".value").textContent = num(r.value) + (r.unit ? " " + r.unit : "");
      row.querySelector(".age").textContent = ago(r.ts);
      row.dataset.ts = String(r.ts);
    }
    function refresh() {
      return api("latest").then(function (r) {
        rows = r;
        draw();
        setStatus("updated " + new Date().toLocaleTimeString(), false);
      }, fail);
    }
    search.addEventListener("input", function () { state.filter = search.value.trim(); state.shown = PAGE; draw(); });
    more.addEventListener("click", function () { state.shown += PAGE; draw(); });
    refresh();
    schedule(refresh);
  }

  function spark(row) {
    var key = row.dataset.device + "/" + row.dataset.sensor;
    var cached = sparks.get(key);
    if (cached && Date.now() - cached.at < SPARK_TTL_MS) return drawSpark(row, cached.points);
    api("series", { device: row.dataset.device, sensor: row.dataset.sensor, from: "-24h", points: SPARK_POINTS }).then(function (points) {
      sparks.set(key, { at: Date.now(), points: points });
      drawSpark(row, points);
    }, function () {});
  }
  function drawSpark(row, points) {
    var svg = row.querySelector("svg");
    if (!svg || points.length < 2) return;
    var ys = points.map(function (p) { return "value" in p ? p.value : p.mean; });
    var x0 = points[0].ts, x1 = points[points.length - 1].ts;
    var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys);
    var coords = points.map(function (p, i) {
      var x = x1 === x0 ? 0 : ((p.ts - x0) / (x1 - x0)) * 100;
      var y = hi === lo ? 14 : 26 - ((ys[i] - lo) / (hi - lo)) * 24;
      return x.toFixed(2) + "," + y.toFixed(2);
    });
    svg.setAttribute("viewBox", "0 0 100 28");
    svg.innerHTML = '<polyline points="' + coords.join(" ") + '"></polyline>';
  }

  // One device: a chart per sensor over the chosen range.
  function device(id) {
    main.textContent = "";
    charts = [];
    var title = el("h2", { text: id });
    var picker = el("div", { class: "toolbar range" }, [el("a", { href: "#/", text: "all devices" })]);
    var from = el("input", { type: "datetime-local", "aria-label": "from" });
    var to = el("input", { type: "datetime-local", "aria-label": "to" });
    var apply = el("button", { text: "apply" });
    var custom = el("div", { class: "custom" + (state.range === "custom" ? " open" : "") }, [from, el("span", { text: "to" }), to, apply]);
    from.value = state.customFrom;
    to.value = state.customTo;
    RANGES.forEach(function (r) {
      var b = el("button", { "data-range": r[0], text: r[1] });
      if (r[0] === state.range) b.classList.add("active");
      b.addEventListener("click", function () {
        state.range = r[0];
        picker.querySelectorAll("button[data-range]").forEach(function (x) { x.classList.toggle("active", x === b); });
        custom.classList.toggle("open", r[0] === "custom");
        if (r[0] !== "custom") refresh();
      });
      picker.appendChild(b);
    });
    apply.addEventListener("click", function () {
      state.customFrom = from.value;
      state.customTo = to.value;
      refresh();
    });
    var panels = el("div", { id: "charts" });
    main.appendChild(title);
    main.appendChild(picker);
    main.appendChild(custom);
    main.appendChild(panels);

    function range() {
      if (state.range !== "custom") return { from: "-" + state.range };
      var r = {};
      if (state.customFrom) r.from = new Date(state.customFrom).toISOString();
      if (state.customTo) r.to = new Date(state.customTo).toISOString();
      return r;
    }
    function panelFor(r) {
      var p = panels.querySelector('[data-sensor="' + r.sensor + '"]');
      if (!p) {
        p = el("section", { class: "panel", "data-sensor": r.sensor }, [
          el("h3", {}, [el("span", { text: r.sensor }), el("span", { class: "mode" }), el("span", { class: "latest" })]),
          el("div", { class: "chart" })]);
        panels.appendChild(p);
      }
      p.querySelector(".latest").textContent = num(r.value) + (r.unit ? " " + r.unit : "") + " \\u00b7 " + ago(r.ts);
      return p;
    }
    function plot(panel, points, unit) {
      var box = panel.querySelector(".chart");
      var width = Math.max(240, box.clientWidth);
      var bands = points.length > 0 && "min" in points[0];
      var xs = points.map(function (p) { return p.ts / 1000; });
      var data, series;
      if (bands) {
        data = [xs, points.map(function (p) { return p.max; }), points.map(function (p) { return p.mean; }), points.map(function (p) { return p.min; })];
        series = [{}, { label: "max", stroke: "rgba(43,108,176,0.45)", width: 1 }, { label: "mean", stroke: "#2b6cb0", width: 1.5 },
          { label: "min", stroke: "rgba(43,108,176,0.45)", width: 1 }];
      } else {
        data = [xs, points.map(function (p) { return p.value; })];
        series = [{}, { label: unit || "value", stroke: "#2b6cb0", width: 1.5, points: { show: points.length < 150 } }];
      }
      panel.dataset.points = String(points.length);
      panel.dataset.mode = bands ? "bands" : "raw";
      panel.querySelector(".mode").textContent = points.length === 0 ? "no readings in range" : bands ? "min / mean / max per bucket" : points.length + " readings";
      var old = panel.chart;
      if (old && old.series.length === series.length) {
        old.setData(data);
        return;
      }
      if (old) old.destroy();
      var opts = { width: width, height: 220, series: series, scales: { x: { time: true } }, legend: { show: true },
        bands: bands ? [{ series: [1, 3], fill: "rgba(43,108,176,0.18)" }] : [] };
      panel.chart = new uPlot(opts, data, box);
      charts.push(panel.chart);
    }
    function refresh() {
      var r = range();
      return api("latest", { device: id }).then(function (latest) {
        if (latest.length === 0) panels.replaceChildren(el("p", { class: "empty", text: "No readings of this device." }));
        var width = Math.max(240, Math.min(2000, panels.clientWidth || 600));
        return Promise.all(latest.map(function (l) {
          var panel = panelFor(l);
          var q = Object.assign({ device: id, sensor: l.sensor, points: Math.round(width / 2) }, r);
          return api("series", q).then(function (points) { plot(panel, points, l.unit); });
        }));
      }).then(function () { setStatus("updated " + new Date().toLocaleTimeString(), false); }, fail);
    }
    refresh();
    schedule(refresh);
  }

  window.addEventListener("resize", function () {
    charts.forEach(function (c) {
      var w = c.root.parentElement.clientWidth;
      if (w > 0) c.setSize({ width: w, height: 220 });
    });
  });
  function route() {
    clearTimeout(timer);
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    var m = /^#\\/device\\/(.+)$/.exec(location.hash);
    if (m) device(decodeURIComponent(m[1]));
    else overview();
  }
  window.addEventListener("hashchange", route);
  route();
})();
`;

const require = createRequire(import.meta.url);

/** Files of the dashboard by URL path; uPlot's are read from the installed package, once. */
export function dashboardAssets(): Readonly<Record<string, Asset>> {
  const uplot = (file: string) => new Uint8Array(readFileSync(require.resolve(`uplot/dist/${file}`)));
  const revalidate = "no-cache";
  return {
    "/": { body: HTML, type: "text/html; charset=utf-8", cache: revalidate },
    "/assets/app.js": { body: JS, type: "text/javascript; charset=utf-8", cache: revalidate },
    "/assets/app.css": { body: CSS, type: "text/css; charset=utf-8", cache: revalidate },
    "/assets/uPlot.iife.min.js": {
      body: uplot("uPlot.iife.min.js"),
      type: "text/javascript; charset=utf-8",
      cache: "max-age=86400",
    },
    "/assets/uPlot.min.css": {
      body: uplot("uPlot.min.css"),
      type: "text/css; charset=utf-8",
      cache: "max-age=86400",
    },
  };
}
