import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServe } from "../../serve/index.js";
import { type QueryDb, queryDb, reading } from "../helpers/query-db.js";

// startServe runs its queries in worker threads (the compiled serve/query-worker.js), so this test uses the build
// (npm test builds first).
const { startServe } = (await import(
  new URL("../../dist/serve/index.js", import.meta.url).href
)) as typeof import("../../serve/index.js");

/** Debian's chromium (`apt-get install -y chromium`); the test never downloads a browser. */
const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];
const MINUTE = 60_000;
/** Every file of the page by URL path: where the package holds it, and its content type. */
const BUILT = new URL("../../dist/serve/dashboard/", import.meta.url);
const UPLOT = (file: string) => createRequire(import.meta.url).resolve(`uplot/dist/${file}`);
const FILES = {
  "/": { file: new URL("index.html", BUILT), type: "text/html; charset=utf-8" },
  "/assets/app.css": { file: new URL("app.css", BUILT), type: "text/css; charset=utf-8" },
  "/assets/app.js": { file: new URL("app.js", BUILT), type: "text/javascript; charset=utf-8" },
  "/assets/api.js": { file: new URL("api.js", BUILT), type: "text/javascript; charset=utf-8" },
  "/assets/uPlot.min.css": { file: UPLOT("uPlot.min.css"), type: "text/css; charset=utf-8" },
  "/assets/uPlot.iife.min.js": { file: UPLOT("uPlot.iife.min.js"), type: "text/javascript; charset=utf-8" },
} as const;
const SCREENSHOT = "/tmp/telemetry-dashboard.png";
const PHONE_SCREENSHOT = "/tmp/telemetry-dashboard-phone.png";

/** Runs `fn` with the process in an empty temporary directory, then goes back and deletes it. */
async function inEmptyDirectory<T>(fn: () => Promise<T>): Promise<T> {
  const elsewhere = mkdtempSync(join(tmpdir(), "serve-dashboard-cwd-"));
  const cwd = process.cwd();
  process.chdir(elsewhere);
  try {
    return await fn();
  } finally {
    process.chdir(cwd);
    rmSync(elsewhere, { recursive: true, force: true });
  }
}

describe("the dashboard in Chromium", () => {
  let db: QueryDb;
  let serve: RunningServe;
  let browser: Browser;
  const now = Date.now();
  let lastOfGreenhouse2: number;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`no browser at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium)`);
    }
    db = queryDb("serve-dashboard-");
    // Three days of greenhouse-1 every 5 minutes (more points than a chart shows: bands over a week), and an
    // hour of greenhouse-2.
    const rows = [];
    for (let t = now - 3 * 24 * 60 * MINUTE; t <= now - MINUTE; t += 5 * MINUTE) {
      rows.push(reading("greenhouse-1", "temperature", t, 20 + Math.sin(t / 3_600_000) * 3));
      rows.push(reading("greenhouse-1", "humidity", t, 60 + Math.cos(t / 3_600_000) * 10));
    }
    for (let t = now - 60 * MINUTE; t <= now - MINUTE; t += MINUTE) {
      rows.push(reading("greenhouse-2", "temperature", t, 18 + (Math.round(t / MINUTE) % 7)));
    }
    lastOfGreenhouse2 = rows.at(-1)?.value ?? Number.NaN;
    await db.write(rows);
    serve = await startServe({ dbPath: db.path, host: "127.0.0.1", port: 0 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });
  afterAll(async () => {
    await browser?.close();
    await serve?.stop();
    await db?.dispose();
  });

  /** Opens `path`, with `onPage` called before the page loads (to watch its requests). */
  const open = async (
    path: string,
    viewport = { width: 1280, height: 900 },
    onPage: (page: Page) => void = () => undefined,
  ): Promise<Page> => {
    const page = await browser.newPage({ viewport });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    onPage(page);
    await page.goto(`${serve.url}${path}`);
    expect(errors).toEqual([]);
    return page;
  };

  it("lists every device with its sensors' latest values", async () => {
    const page = await open("/?refresh=0.5");
    const card = page.locator('section.card[data-device="greenhouse-2"]');
    await card.waitFor();
    await expect.poll(() => page.locator("section.card").count()).toBe(2);
    expect(await card.locator('[data-sensor="temperature"] .value').textContent()).toBe(
      `${lastOfGreenhouse2} C`,
    );
    expect(
      await page.locator('section.card[data-device="greenhouse-1"] .sensor .name').allTextContents(),
    ).toEqual(["humidity", "temperature"]);
    await expect
      .poll(() => page.locator('section.card[data-device="greenhouse-1"] svg.spark polyline').count())
      .toBe(2);
    await page.close();
  });

  it("shows a new reading written to the database without a reload", async () => {
    const page = await open("/?refresh=0.5");
    const value = page.locator('section.card[data-device="greenhouse-2"] [data-sensor="temperature"] .value');
    await value.waitFor();
    await db.write([reading("greenhouse-2", "temperature", Date.now(), 42.25)]);
    await expect.poll(() => value.textContent(), { timeout: 10_000 }).toBe("42.25 C");
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    await page.close();
  });

  it("draws a chart per sensor, and the range picker asks for the range and switches to min/max bands", async () => {
    const series: URL[] = [];
    const page = await open("/?refresh=0.5#/device/greenhouse-1", undefined, (p) =>
      p.on("request", (r) => {
        const url = new URL(r.url());
        if (url.pathname === "/api/series") series.push(url);
      }),
    );
    const chart = page.locator('.panel[data-sensor="temperature"]');
    await expect.poll(() => chart.getAttribute("data-mode")).toBe("raw");
    expect(Number(await chart.getAttribute("data-points"))).toBeGreaterThan(100);
    expect(await chart.locator("canvas").count()).toBeGreaterThan(0);
    expect(series.at(-1)?.searchParams.get("from")).toBe("-24h");

    await page.getByRole("button", { name: "7 d" }).click();
    await expect.poll(() => chart.getAttribute("data-mode")).toBe("bands");
    expect(series.some((u) => u.searchParams.get("from") === "-7d")).toBe(true);
    await page.screenshot({ path: SCREENSHOT.replace(".png", "-device.png"), fullPage: true });

    await page.getByRole("button", { name: "1 h" }).click();
    await expect.poll(() => series.at(-1)?.searchParams.get("from")).toBe("-1h");
    await expect.poll(() => chart.getAttribute("data-mode")).toBe("raw");
    await page.close();
  });

  it("fits a phone's screen", async () => {
    const page = await open("/", { width: 390, height: 844 });
    await page.locator('section.card[data-device="greenhouse-1"]').waitFor();
    const width = Number(await page.evaluate("document.documentElement.scrollWidth"));
    expect(width).toBeLessThanOrEqual(390);
    await page.screenshot({ path: PHONE_SCREENSHOT, fullPage: true });
    await page.close();
  });

  it("asks for its own files only, each served with its content type, no-cache and an ETag", async () => {
    const answers = new Map<string, Record<string, string>>();
    const page = await open("/", undefined, (p) =>
      p.on("response", (r) => {
        const path = new URL(r.url()).pathname;
        if (!path.startsWith("/api/")) answers.set(path, { status: String(r.status()), ...r.headers() });
      }),
    );
    await page.locator("section.card").first().waitFor();
    await page.close();
    expect([...answers.keys()].sort()).toEqual(Object.keys(FILES).sort());
    for (const [path, { type }] of Object.entries(FILES)) {
      expect(answers.get(path), path).toMatchObject({
        status: "200",
        "content-type": type,
        "cache-control": "no-cache",
      });
      expect(answers.get(path)?.etag, path).toMatch(/^"[^"]+"$/);
    }
  });

  it("answers 304 without a body to a browser whose copy is current, and the whole file to one whose copy is not", async () => {
    for (const [path, { file }] of Object.entries(FILES)) {
      const first = await fetch(`${serve.url}${path}`);
      await first.arrayBuffer();
      const etag = first.headers.get("etag") ?? "";
      const current = await fetch(`${serve.url}${path}`, { headers: { "if-none-match": etag } });
      expect([current.status, await current.text(), current.headers.get("etag")], path).toEqual([
        304,
        "",
        etag,
      ]);
      const older = await fetch(`${serve.url}${path}`, { headers: { "if-none-match": '"an-older-build"' } });
      expect(older.status, path).toBe(200);
      expect(Buffer.from(await older.arrayBuffer()).equals(readFileSync(file)), path).toBe(true);
    }
  });

  it("serves the files of the package, whatever the directory it was started in", async () => {
    // A fresh instance of the module (the query makes it one), loaded and asked for its routes in an empty folder.
    const routes = await inEmptyDirectory(async () => {
      const fresh = (await import(
        new URL("../../dist/serve/dashboard.js?started-elsewhere", import.meta.url).href
      )) as typeof import("../../serve/dashboard.js");
      return fresh.dashboardRoutes();
    });
    for (const [path, { file }] of Object.entries(FILES)) {
      const body = Buffer.from(await (await routes.request(path)).arrayBuffer());
      expect(body.equals(readFileSync(file)), path).toBe(true);
    }
  });

  it("is in the npm package: the built page, styles and script", async () => {
    const { stdout } = await promisify(execFile)("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: new URL("../..", import.meta.url),
    });
    const [pack] = JSON.parse(stdout) as { files: { path: string }[] }[];
    expect(pack?.files.map((f) => f.path)).toEqual(
      expect.arrayContaining([
        "dist/serve/dashboard.js",
        "dist/serve/dashboard/index.html",
        "dist/serve/dashboard/app.css",
        "dist/serve/dashboard/app.js",
        "dist/serve/dashboard/api.js",
      ]),
    );
  });
});
