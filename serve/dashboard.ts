/**
 * The dashboard `telemetry serve` shows at `/`: one page, its styles, a small browser script and uPlot, all served
 * from the package (never a CDN: these machines are often offline).
 *
 * Its files are in serve/dashboard/: `index.html`, `app.css`, and the browser script, `app.ts` with `api.ts` (its
 * requests, with the token), checked and compiled by their own tsconfig (DOM, uPlot's types). `npm run build` writes
 * them to dist/serve/dashboard/app.js and api.js and copies the page and styles next to them, so dist/ alone serves
 * the dashboard (the Docker image copies dist/ and node_modules/ only). uPlot's files are read from the installed
 * uplot package.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Hono } from "hono";
import { etag } from "hono/etag";

/**
 * The built dashboard: next to this module once compiled (dist/serve/dashboard/). Tests that run this module from
 * its TypeScript source (serve/dashboard.ts, under vitest) read the same built folder, since the browser script
 * exists only compiled.
 */
const BUILT = import.meta.url.endsWith(".ts")
  ? new URL("../dist/serve/dashboard/", import.meta.url)
  : new URL("dashboard/", import.meta.url);

const require = createRequire(import.meta.url);

const HTML = "text/html; charset=utf-8";
const CSS = "text/css; charset=utf-8";
const JS = "text/javascript; charset=utf-8";

/** URL path, file and content type of every file of the dashboard. */
const FILES: readonly (readonly [path: string, file: URL | string, type: string])[] = [
  ["/", new URL("index.html", BUILT), HTML],
  ["/assets/app.css", new URL("app.css", BUILT), CSS],
  ["/assets/app.js", new URL("app.js", BUILT), JS],
  ["/assets/api.js", new URL("api.js", BUILT), JS],
  ["/assets/uPlot.min.css", require.resolve("uplot/dist/uPlot.min.css"), CSS],
  ["/assets/uPlot.iife.min.js", require.resolve("uplot/dist/uPlot.iife.min.js"), JS],
];

function read(file: URL | string): Uint8Array<ArrayBuffer> {
  try {
    return new Uint8Array(readFileSync(file));
  } catch (err) {
    // The message names the file: "ENOENT: no such file or directory, open '...'".
    throw new Error(`the dashboard is not built (npm run build): ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The dashboard's routes (GET and HEAD of `/` and `/assets/...`), to mount at `/`. Every file is read once, here,
 * so a missing build fails at start, not at a browser's first visit. Each is served with its content type,
 * `cache-control: no-cache` and an ETag: the URLs never change while the files do (with the package), so a browser
 * asks again on every load and gets a bodiless 304 while its copy is current.
 */
export function dashboardRoutes(): Hono {
  const routes = new Hono();
  for (const [path, file, type] of FILES) {
    const body = read(file);
    routes.get(path, etag(), (c) => c.body(body, 200, { "content-type": type, "cache-control": "no-cache" }));
  }
  return routes;
}
