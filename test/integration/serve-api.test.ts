import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../serve/index.js";
import { openQueries } from "../../store/index.js";
import type { ReadingQueries } from "../../store/queries.js";
import { reading } from "../helpers/query-db.js";
import { STORE_KINDS, type TestStore, testStore } from "../helpers/stores.js";

const MIN = 60_000;
const HOUR = 3_600_000;
/** A whole UTC hour, so hourly buckets start at T0, T0 + 1 h, ... */
const T0 = Date.UTC(2026, 0, 31, 9);

describe.each(STORE_KINDS)("the HTTP API on %s, in-process", (kind) => {
  let db: TestStore;
  let queries: ReadingQueries;
  let app: Hono;
  const temperature = Array.from({ length: 180 }, (_, i) => 20 + (i % 10) / 10 + (i === 95 ? 30 : 0));

  beforeAll(async () => {
    db = await testStore(kind, "serve-api");
    await db.write([
      // Three hours of dev-a's temperature every minute, with one spike at 10:35; humidity every 2 minutes.
      ...temperature.map((v, i) => reading("dev-a", "temperature", T0 + i * MIN, v, { seq: i })),
      ...Array.from({ length: 90 }, (_, i) => reading("dev-a", "humidity", T0 + i * 2 * MIN, 50 + i)),
      reading("dev-b", "pressure", T0, 1_000, { unit: "hPa", quality: "uncertain", tags: { site: "north" } }),
    ]);
    queries = await openQueries(db.config);
    app = createApp(queries);
  });
  afterAll(async () => {
    await queries?.stop();
    await db?.dispose();
  });

  const get = async (path: string) => {
    const res = await app.request(path);
    return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
  };
  const json = async (path: string): Promise<unknown> => {
    const res = await get(path);
    expect(res.status, res.body).toBe(200);
    return JSON.parse(res.body);
  };

  it("answers /healthz", async () => {
    expect((await get("/healthz")).status).toBe(200);
  });

  it("lists devices with each series' unit, span, last value and count", async () => {
    expect(await json("/api/devices")).toEqual([
      {
        device_id: "dev-a",
        last_seen: T0 + 179 * MIN + 5,
        interval_ms: MIN,
        silent: true,
        sensors: [
          {
            sensor: "humidity",
            unit: "%",
            first_ts: T0,
            last_ts: T0 + 178 * MIN,
            last_value: 139,
            count: 90,
          },
          {
            sensor: "temperature",
            unit: "C",
            first_ts: T0,
            last_ts: T0 + 179 * MIN,
            last_value: 20.9,
            count: 180,
          },
        ],
      },
      {
        device_id: "dev-b",
        last_seen: T0 + 5,
        interval_ms: null,
        silent: true,
        sensors: [
          { sensor: "pressure", unit: "hPa", first_ts: T0, last_ts: T0, last_value: 1_000, count: 1 },
        ],
      },
    ]);
  });

  it("gives the newest reading of every series, or of one device", async () => {
    const all = (await json("/api/latest")) as { device_id: string; sensor: string; ts: number }[];
    expect(all.map((r) => [r.device_id, r.sensor, r.ts])).toEqual([
      ["dev-a", "humidity", T0 + 178 * MIN],
      ["dev-a", "temperature", T0 + 179 * MIN],
      ["dev-b", "pressure", T0],
    ]);
    expect(await json("/api/latest?device=dev-b")).toEqual([
      {
        device_id: "dev-b",
        sensor: "pressure",
        ts: T0,
        value: 1_000,
        unit: "hPa",
        seq: null,
        quality: "uncertain",
        tags: { site: "north" },
      },
    ]);
  });

  it("gives readings in time order across sensors, from inclusive and to exclusive", async () => {
    const rows = (await json(
      `/api/readings?device=dev-a&from=${T0 + 2 * MIN}&to=${new Date(T0 + 5 * MIN).toISOString()}`,
    )) as { sensor: string; ts: number }[];
    expect(rows.map((r) => [(r.ts - T0) / MIN, r.sensor])).toEqual([
      [2, "humidity"],
      [2, "temperature"],
      [3, "temperature"],
      [4, "humidity"],
      [4, "temperature"],
    ]);
  });

  it("limits and orders readings newest first", async () => {
    const rows = (await json("/api/readings?device=dev-a&sensor=temperature&order=desc&limit=3")) as {
      ts: number;
      seq: number;
    }[];
    expect(rows.map((r) => r.seq)).toEqual([179, 178, 177]);
  });

  it("streams readings as csv with a header row, or as ndjson", async () => {
    const csv = await get("/api/readings?device=dev-b&format=csv");
    expect(csv.type).toMatch(/^text\/csv/);
    expect(csv.body).toBe(
      'device_id,sensor,ts,value,unit,seq,quality,tags\ndev-b,pressure,1769850000000,1000,hPa,,uncertain,"{""site"":""north""}"\n',
    );
    const nd = await get("/api/readings?device=dev-a&sensor=humidity&format=ndjson");
    expect(nd.type).toMatch(/ndjson/);
    expect(nd.body.trimEnd().split("\n")).toHaveLength(90);
  });

  it("gives hourly buckets equal to a recomputation from the readings", async () => {
    const buckets = (await json("/api/stats?device=dev-a&sensor=temperature&every=1h")) as Record<
      string,
      number
    >[];
    const expected = [0, 1, 2].map((h) => {
      const vs = temperature.slice(h * 60, h * 60 + 60);
      return {
        device_id: "dev-a",
        sensor: "temperature",
        start: T0 + h * HOUR,
        count: 60,
        min: Math.min(...vs),
        max: Math.max(...vs),
        mean: vs.reduce((a, b) => a + b, 0) / vs.length,
        last: vs.at(-1),
      };
    });
    expect(buckets.map(({ mean, ...b }) => b)).toEqual(expected.map(({ mean, ...b }) => b));
    buckets.forEach((b, i) => {
      expect(b.mean).toBeCloseTo(expected[i]?.mean ?? Number.NaN, 9);
    });
  });

  it("fills empty buckets of the asked range", async () => {
    const from = new Date(T0 - HOUR).toISOString();
    const to = new Date(T0 + 4 * HOUR).toISOString();
    const buckets = (await json(
      `/api/stats?device=dev-b&every=1h&from=${from}&to=${to}&fill=prev`,
    )) as Record<string, number | null>[];
    expect(buckets.map((b) => [((b.start ?? 0) - T0) / HOUR, b.count, b.last])).toEqual([
      [-1, 0, null],
      [0, 1, 1_000],
      [1, 0, 1_000],
      [2, 0, 1_000],
      [3, 0, 1_000],
    ]);
  });

  it("gives raw chart points when they fit, else min/max/mean per bucket, so the spike stays visible", async () => {
    const raw = (await json("/api/series?device=dev-a&sensor=temperature&points=500")) as object[];
    expect(raw).toHaveLength(180);
    expect(raw[0]).toEqual({ ts: T0, value: 20 });
    const bucketed = (await json("/api/series?device=dev-a&sensor=temperature&points=20")) as {
      ts: number;
      min: number;
      max: number;
      mean: number;
      count: number;
    }[];
    expect(bucketed.length).toBeLessThanOrEqual(21);
    expect(bucketed.length).toBeGreaterThan(10);
    expect(bucketed.reduce((n, b) => n + b.count, 0)).toBe(180);
    expect(Math.max(...bucketed.map((b) => b.max))).toBe(50.5);
    for (const b of bucketed) expect(Object.keys(b).sort()).toEqual(["count", "max", "mean", "min", "ts"]);
  });

  it("answers an unknown device or sensor with an empty list", async () => {
    expect(await json("/api/readings?device=nobody")).toEqual([]);
    expect(await json("/api/latest?device=nobody")).toEqual([]);
    expect(await json("/api/stats?device=dev-a&sensor=nothing&every=1m")).toEqual([]);
    expect(await json("/api/series?device=nobody&sensor=x&points=10")).toEqual([]);
  });

  it.each([
    ["/api/readings?device=dev-a&from=yesterday", /^from="yesterday": must be an ISO-8601/],
    ["/api/readings", /^device is required/],
    ["/api/readings?device=dev-a&order=sideways", /^order="sideways"/],
    ["/api/readings?device=dev-a&from=now&to=-1h", /is after/],
    ["/api/stats?device=dev-a&every=7m", /^every="7m"/],
    ["/api/stats?device=dev-a", /^every is required/],
    ["/api/stats?device=dev-a&every=1h&fill=zero", /^fill="zero"/],
    ["/api/series?device=dev-a&sensor=temperature&points=1", /^points="1"/],
    ["/api/series?device=dev-a&points=10", /^sensor is required/],
    ["/api/latest?format=table", /^format="table"/],
    ["/api/latest?device=bad%20id", /^device="bad id"/],
  ])("refuses %s with 400 and one line of error", async (path, error) => {
    const res = await get(path);
    expect(res.status).toBe(400);
    const body = JSON.parse(res.body) as { error: string };
    expect(body.error).toMatch(error);
    expect(body.error).not.toContain("\n");
  });

  it("is read-only", async () => {
    const res = await app.request("/api/readings?device=dev-a", { method: "POST" });
    expect(res.status).toBe(405);
  });

  it("serves the dashboard and uPlot from the package", async () => {
    const page = await get("/");
    expect(page.type).toMatch(/^text\/html/);
    expect(page.body).toContain('src="/assets/uPlot.iife.min.js"');
    expect(page.body).not.toMatch(/https?:\/\//);
    const uplot = await get("/assets/uPlot.iife.min.js");
    expect(uplot.status).toBe(200);
    expect(uplot.body).toContain("uPlot");
  });

  it("sees readings committed after it opened the database", async () => {
    await db.write([reading("dev-c", "temperature", T0 + 5 * HOUR, 7.5)]);
    const latest = (await json("/api/latest?device=dev-c")) as { value: number }[];
    expect(latest.map((r) => r.value)).toEqual([7.5]);
  });

  it("keeps an answer for as long as the store's version stays: a client holding it gets 304, a commit makes it one query again", async () => {
    let asked = 0;
    const counting: ReadingQueries = {
      ...queries,
      latest: (device) => {
        asked++;
        return queries.latest(device);
      },
    };
    const cached = createApp(counting);
    const ask = (path: string, etag?: string) =>
      cached.request(path, etag === undefined ? {} : { headers: { "if-none-match": etag } });
    // Cluster-wide, PostgreSQL's version also moves with other databases' writes (other tests): a request expected
    // to find the version unchanged is checked only when it did.
    const unchanged = async (path: string, etag?: string) => {
      const [version, queried] = [await queries.version(), asked];
      const res = await ask(path, etag);
      return { res, queries: asked - queried, same: (await queries.version()) === version };
    };

    const first = await ask("/api/latest?device=dev-e");
    const etag = first.headers.get("etag") ?? "";
    expect(first.status).toBe(200);
    expect(await first.text()).toBe("[]\n");
    expect(first.headers.get("cache-control")).toBe("no-cache");
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await unchanged("/api/latest?device=dev-e");
    if (again.same) {
      expect(again.res.headers.get("etag")).toBe(etag);
      expect(await again.res.text()).toBe("[]\n");
      expect(again.queries, "answered from the cache").toBe(0);
    }
    const held = await unchanged("/api/latest?device=dev-e", etag);
    if (held.same) {
      expect(held.res.status).toBe(304);
      expect(await held.res.text()).toBe("");
      expect(held.queries, "304 without a query").toBe(0);
    }
    // An export: not kept, but a client holding it is answered 304 alike.
    const path = "/api/readings?device=dev-a&limit=3&format=csv";
    const exportHeld = await unchanged(path, (await ask(path)).headers.get("etag") ?? "");
    if (exportHeld.same) expect(exportHeld.res.status).toBe(304);
    // Another format of the same question is another answer, with another tag.
    const asCsv = await ask("/api/latest?device=dev-e&format=csv");
    expect(asCsv.headers.get("etag")).not.toBe(etag);

    // A commit: the tag the client holds is stale, the answer is read again, once.
    await db.write([reading("dev-e", "temperature", T0, 3.25)]);
    const before = asked;
    const changed = await ask("/api/latest?device=dev-e", etag);
    expect(changed.status).toBe(200);
    expect(((await changed.json()) as { value: number }[]).map((r) => r.value)).toEqual([3.25]);
    expect(changed.headers.get("etag")).not.toBe(etag);
    expect(asked).toBe(before + 1);
  });
});
