/**
 * The dashboard of a serve that asks for a token, over HTTPS (openssl-made certificates), in real Chromium: the page
 * asks for the token once, keeps it for the session (a reload does not ask again), and asks again when the token
 * is refused. Uses the build (npm run build first), as serve-dashboard.test.ts does.
 */
import { existsSync } from "node:fs";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServe } from "../../serve/index.js";
import { makeTestCerts, type TestCerts } from "../helpers/certs.js";
import { type QueryDb, queryDb, reading } from "../helpers/query-db.js";

const { startServe } = (await import(
  new URL("../../dist/serve/index.js", import.meta.url).href
)) as typeof import("../../serve/index.js");

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"];
const TOKEN = "dashboard-token-0123456789";

describe("the dashboard with a token, over HTTPS, in Chromium", () => {
  let db: QueryDb;
  let certs: TestCerts;
  let serve: RunningServe;
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: apt-get install -y chromium`);
    db = queryDb("serve-security-dashboard-");
    const now = Date.now();
    await db.write(
      Array.from({ length: 30 }, (_, i) => reading("greenhouse-1", "temperature", now - i * 60_000, 21)),
    );
    certs = await makeTestCerts();
    serve = await startServe({
      dbPath: db.path,
      host: "127.0.0.1",
      port: 0,
      tokens: [TOKEN],
      tlsCertFile: certs.serverCert,
      tlsKeyFile: certs.serverKey,
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });
  afterAll(async () => {
    await browser?.close();
    await serve?.stop();
    await db?.dispose();
    certs?.remove();
  });

  it("asks for the token once, shows the data, and keeps the token for the session", async () => {
    expect(serve.url).toMatch(/^https:/);
    // The test authority is not in Chromium's store; the certificate itself is checked by serve-security.test.ts.
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const authorized: string[] = [];
    page.on("request", (r) => {
      if (new URL(r.url()).pathname.startsWith("/api/")) authorized.push(r.headers().authorization ?? "");
    });
    await page.goto(`${serve.url}/?refresh=0.5`);
    const form = page.locator("#token-form");
    await form.waitFor();
    expect(await page.locator("section.card").count()).toBe(0);
    await form.locator('input[name="token"]').fill(TOKEN);
    await form.locator('button[type="submit"]').click();
    await page.locator('section.card[data-device="greenhouse-1"]').waitFor();
    expect(await form.count()).toBe(0);
    expect(authorized).toContain(`Bearer ${TOKEN}`);
    // A reload in the same tab keeps the token: no prompt, the data straight away.
    await page.reload();
    await page.locator('section.card[data-device="greenhouse-1"]').waitFor();
    expect(await page.locator("#token-form").count()).toBe(0);
    expect(errors).toEqual([]);
    await context.close();
  });

  it("asks again, saying so, when the token is refused", async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(`${serve.url}/?refresh=0.5`);
    const form = page.locator("#token-form");
    await form.locator('input[name="token"]').fill("not-the-token-0123456789");
    await form.locator('button[type="submit"]').click();
    await expect.poll(() => form.textContent()).toMatch(/refused/);
    await form.locator('input[name="token"]').fill(TOKEN);
    await form.locator('button[type="submit"]').click();
    await page.locator('section.card[data-device="greenhouse-1"]').waitFor();
    await context.close();
  });
});
