import { spawnSync } from "node:child_process";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../serve/index.js";
import { openQueries } from "../../store/index.js";
import type { ReadingQueries } from "../../store/queries.js";
import { reading } from "../helpers/query-db.js";
import { STORE_KINDS, type TestStore, testStore } from "../helpers/stores.js";

/** The built CLI: run `npm run build` first. */
const CLI = "dist/cli/telemetry.js";
const SEC = 1_000;
const MIN = 60 * SEC;
const DEVICES = 3_000;
/** dev-0000 .. dev-2999: ids whose string order is their number's. */
const id = (i: number) => `dev-${String(i).padStart(4, "0")}`;

function telemetry(args: readonly string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    env: { ...process.env, DB_PATH: "", ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface DeviceEntry {
  device_id: string;
  last_seen: number;
  interval_ms: number | null;
  silent: boolean;
  sensors: { sensor: string }[];
}

describe.each(STORE_KINDS)("silent devices on %s", (kind) => {
  let db: TestStore;
  let queries: ReadingQueries;
  const now = Date.now();

  beforeAll(async () => {
    db = await testStore(kind, "fleet-silent");
    // Received every 10 s: "live" up to now, "quiet" until 5 minutes ago. "slow" every 2 minutes, last 4 minutes
    // ago (within three intervals); "once" sent one reading 2 minutes ago (no interval yet: SILENT_MIN alone).
    const every = (device: string, step: number, last: number, n: number) =>
      Array.from({ length: n }, (_, i) => {
        const at = last - (n - 1 - i) * step;
        return reading(device, "t", at - 40, i, { received_at: at });
      });
    await db.write([
      ...every("live", 10 * SEC, now - 2 * SEC, 30),
      ...every("quiet", 10 * SEC, now - 5 * MIN, 30),
      ...every("slow", 2 * MIN, now - 4 * MIN, 5),
      reading("once", "t", now - 2 * MIN, 1, { received_at: now - 2 * MIN }),
    ]);
    queries = await openQueries(db.config);
  });
  afterAll(async () => {
    await queries?.stop();
    await db?.dispose();
  });

  it("a device that stopped reporting is silent, one that reports is not, whichever way it is asked", async () => {
    const expected = [
      { device_id: "live", last_seen: now - 2 * SEC, interval_ms: 10_000, silent: false },
      { device_id: "once", last_seen: now - 2 * MIN, interval_ms: null, silent: true },
      { device_id: "quiet", last_seen: now - 5 * MIN, interval_ms: 10_000, silent: true },
      { device_id: "slow", last_seen: now - 4 * MIN, interval_ms: 120_000, silent: false },
    ];
    const entry = ({ device_id, last_seen, interval_ms, silent }: DeviceEntry) => ({
      device_id,
      last_seen,
      interval_ms,
      silent,
    });

    const cli = telemetry(["query", "devices", ...db.cliArgs], { SILENT_MIN: "60s" });
    expect(cli.stderr).toBe("");
    expect((JSON.parse(cli.stdout) as DeviceEntry[]).map(entry)).toEqual(expected);

    const app = createApp(queries, { dashboard: false, silentMin: MIN });
    const res = await app.request("/api/devices");
    expect((JSON.parse(await res.text()) as DeviceEntry[]).map(entry)).toEqual(expected);

    // A longer SILENT_MIN holds the floor: nothing has been quiet for 10 minutes.
    const patient = telemetry(["query", "devices", "--silent-min", "10m", ...db.cliArgs]);
    expect((JSON.parse(patient.stdout) as DeviceEntry[]).filter((d) => d.silent)).toEqual([]);
  });

  it("telemetry status counts the silent devices and names them", () => {
    // No services on these ports: status says so and exits 1, and still reports the store.
    const r = telemetry(
      [
        "status",
        "--format",
        "json",
        "--gateway",
        "http://127.0.0.1:9",
        "--processor",
        "http://127.0.0.1:9",
        ...db.cliArgs,
      ],
      { SILENT_MIN: "60s" },
    );
    const store = (JSON.parse(r.stdout) as { store: Record<string, unknown> }).store;
    expect(store).toMatchObject({ devices: 4, silent_devices: 2, silent_first: ["once", "quiet"] });
  });
});

describe.each(STORE_KINDS)("paging a fleet of 3,000 devices on %s", (kind) => {
  let db: TestStore;
  let queries: ReadingQueries;
  let app: Hono;
  const T0 = Date.UTC(2026, 0, 31, 9);

  beforeAll(async () => {
    db = await testStore(kind, "fleet-paging");
    const rows = Array.from({ length: DEVICES }, (_, i) => [
      reading(id(i), "humidity", T0 + i, i),
      reading(id(i), "temperature", T0 + i, i),
    ]).flat();
    for (let i = 0; i < rows.length; i += 2_000) await db.write(rows.slice(i, i + 2_000));
    queries = await openQueries(db.config);
    app = createApp(queries, { dashboard: false });
  });
  afterAll(async () => {
    await queries?.stop();
    await db?.dispose();
  });

  it("query devices and latest page through every device once, in device order, with --limit and --after", () => {
    for (const question of ["devices", "latest"]) {
      const seen: string[] = [];
      let after: string | undefined;
      // Bounded, so a page that never ends is a failure and not a hang: 3,000 devices are 5 pages of 700.
      for (let pages = 0; pages < 6; pages++) {
        const r = telemetry([
          "query",
          question,
          "--limit",
          "700",
          ...(after === undefined ? [] : ["--after", after]),
          ...db.cliArgs,
        ]);
        expect(r.stderr).toBe("");
        const page = (JSON.parse(r.stdout) as { device_id: string }[]).map((d) => d.device_id);
        if (page.length === 0) break;
        // latest: every series of each device on the page, none split across pages.
        const ids = [...new Set(page)];
        expect(ids.length).toBeLessThanOrEqual(700);
        if (question === "latest") expect(page).toHaveLength(ids.length * 2);
        seen.push(...ids);
        after = ids.at(-1);
      }
      expect(seen).toEqual(Array.from({ length: DEVICES }, (_, i) => id(i)));
    }
  });

  it("--match narrows to a prefix and pages within it", () => {
    const r = telemetry([
      "query",
      "devices",
      "--match",
      "dev-12",
      "--after",
      "dev-1249",
      "--limit",
      "20",
      ...db.cliArgs,
    ]);
    expect((JSON.parse(r.stdout) as DeviceEntry[]).map((d) => d.device_id)).toEqual(
      Array.from({ length: 20 }, (_, i) => id(1_250 + i)),
    );
  });

  it("the API pages /api/devices and /api/latest by following Link rel=next to the end", async () => {
    for (const path of ["/api/devices", "/api/latest"]) {
      const seen: string[] = [];
      let next: string | undefined = `${path}?limit=400&match=dev-`;
      let pages = 0;
      while (next !== undefined && pages <= DEVICES / 400) {
        const res = await app.request(next);
        expect(res.status).toBe(200);
        const page = (JSON.parse(await res.text()) as { device_id: string }[]).map((d) => d.device_id);
        seen.push(...new Set(page));
        pages++;
        const link = res.headers.get("link");
        next = link === null ? undefined : /^<([^>]+)>; rel="next"$/.exec(link)?.[1];
        if (link !== null) expect(next).toBeDefined();
      }
      expect(pages).toBe(Math.ceil(DEVICES / 400));
      expect(seen).toEqual(Array.from({ length: DEVICES }, (_, i) => id(i)));
    }
  });

  it("the paging parameters are part of the question: the same store answers each page as asked", async () => {
    const first = await app.request("/api/devices?limit=2");
    const second = await app.request("/api/devices?limit=2&after=dev-0001");
    expect((JSON.parse(await first.text()) as DeviceEntry[]).map((d) => d.device_id)).toEqual([
      "dev-0000",
      "dev-0001",
    ]);
    expect((JSON.parse(await second.text()) as DeviceEntry[]).map((d) => d.device_id)).toEqual([
      "dev-0002",
      "dev-0003",
    ]);
    expect(first.headers.get("etag")).not.toBe(second.headers.get("etag"));
    const bad = await app.request("/api/devices?limit=0");
    expect(bad.status).toBe(400);
  });

  it("behind tokens and the Host check, every page and the Link target of each needs the token", async () => {
    const token = "fleet-paging-token-0123";
    const guarded = createApp(queries, { dashboard: false, tokens: [token], loopbackOnly: true });
    const host = { host: "127.0.0.1:8080" };
    const auth = { ...host, authorization: `Bearer ${token}` };
    for (const path of ["/api/devices", "/api/latest"]) {
      const first = await guarded.request(`${path}?limit=2`, { headers: auth });
      expect(first.status).toBe(200);
      const next = /^<([^>]+)>; rel="next"$/.exec(first.headers.get("link") ?? "")?.[1];
      expect(next).toMatch(new RegExp(`^${path}\\?`));
      expect((await guarded.request(`${path}?limit=2`, { headers: host })).status).toBe(401);
      expect((await guarded.request(next ?? "", { headers: host })).status).toBe(401);
      const foreign = await guarded.request(next ?? "", { headers: { ...auth, host: "attacker.example" } });
      expect(foreign.status).toBe(421);
      expect((await guarded.request(next ?? "", { headers: auth })).status).toBe(200);
    }
  });
});
