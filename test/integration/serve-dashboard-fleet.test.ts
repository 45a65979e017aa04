import { existsSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServe } from "../../serve/index.js";
import { type QueryDb, queryDb, reading } from "../helpers/query-db.js";

// startServe runs its queries in worker threads (the compiled serve/query-worker.js): this test uses the build.
const { startServe } = (await import(
  new URL("../../dist/serve/index.js", import.meta.url).href
)) as typeof import("../../serve/index.js");

/** Debian's chromium, as in serve-dashboard.test.ts; the test never downloads a browser. */
const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"];
const DEVICES = 20_000;
/** The overview's page of cards (serve/dashboard/app.ts). */
const PAGE = 60;
const id = (i: number) => `dev-${String(i).padStart(5, "0")}`;

describe("the dashboard on a fleet of 20,000 devices, in Chromium", () => {
  let db: QueryDb;
  let serve: RunningServe;
  let browser: Browser;
  const now = Date.now();

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`no browser at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium)`);
    }
    db = queryDb("dashboard-fleet-");
    // Every device reported 11 s and 1 s ago (every 10 s); every 1,000th stopped 10 minutes ago: silent.
    const rows = [];
    for (let i = 0; i < DEVICES; i++) {
      const last = i % 1_000 === 0 ? now - 600_000 : now - 1_000;
      for (const at of [last - 10_000, last])
        rows.push(reading(id(i), "temperature", at, i, { received_at: at }));
    }
    for (let i = 0; i < rows.length; i += 5_000) await db.write(rows.slice(i, i + 5_000));
    serve = await startServe({ dbPath: db.path, host: "127.0.0.1", port: 0 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });
  afterAll(async () => {
    await browser?.close();
    await serve?.stop();
    await db?.dispose();
  });

  const open = async (asked: URL[]): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.pathname === "/api/devices" || url.pathname === "/api/latest") asked.push(url);
    });
    await page.goto(`${serve.url}/?refresh=60`);
    expect(errors).toEqual([]);
    return page;
  };
  const cards = (page: Page) => page.locator("section.card");

  it("shows a page of cards, asks the server for that page only, and marks the silent devices", async () => {
    const asked: URL[] = [];
    const page = await open(asked);
    await expect.poll(() => cards(page).count()).toBe(PAGE);
    expect(await cards(page).first().getAttribute("data-device")).toBe(id(0));
    expect(await page.locator(".count").textContent()).toBe(`${PAGE}+ devices, 1 silent`);
    // Every question of the overview is a page: none asks for the whole fleet.
    expect(asked.length).toBeGreaterThan(0);
    for (const url of asked) expect(url.searchParams.get("limit")).toBe(String(PAGE));

    const silent = page.locator(`section.card[data-device="${id(0)}"]`);
    expect(await silent.getAttribute("class")).toBe("card silent");
    expect(await silent.locator(".silence").textContent()).toMatch(/^silent, last seen 10 min ago$/);
    expect(await page.locator(`section.card[data-device="${id(1)}"]`).getAttribute("class")).toBe("card");
    await page.close();
  });

  it("searches on the server by prefix, and pages further with show more", async () => {
    const asked: URL[] = [];
    const page = await open(asked);
    await expect.poll(() => cards(page).count()).toBe(PAGE);
    await page.fill('input[type="search"]', "dev-1234");
    await expect
      .poll(async () =>
        (await cards(page).evaluateAll((cs) => cs.map((c) => c.getAttribute("data-device")))).join(),
      )
      .toBe(Array.from({ length: 10 }, (_, i) => id(12_340 + i)).join());
    expect(asked.some((u) => u.searchParams.get("match") === "dev-1234")).toBe(true);

    await page.fill('input[type="search"]', "");
    await expect.poll(() => cards(page).count()).toBe(PAGE);
    await page.click("button.more");
    await expect.poll(() => cards(page).count()).toBe(2 * PAGE);
    expect(await cards(page).last().getAttribute("data-device")).toBe(id(2 * PAGE - 1));
    // What keeps the page responsive whatever the fleet: it holds the cards asked for, not one per device.
    expect(await page.locator("*").count()).toBeLessThan(3_000);
    await page.close();
  });
});
