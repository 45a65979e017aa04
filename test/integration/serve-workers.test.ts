import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServe } from "../../serve/index.js";
import { type QueryDb, queryDb, reading } from "../helpers/query-db.js";

// startServe runs SQLite queries in worker threads (the compiled serve/query-worker.js), so this test uses the
// build (npm test builds first).
const { startServe } = (await import(
  new URL("../../dist/serve/index.js", import.meta.url).href
)) as typeof import("../../serve/index.js");

const { startQueryPool } = (await import(
  new URL("../../dist/serve/query-pool.js", import.meta.url).href
)) as typeof import("../../serve/query-pool.js");

const T0 = Date.UTC(2026, 0, 31);
const SENSORS = ["humidity", "pressure", "temperature"];
/** Rows of the device the export reads: a csv of several tens of MB, seconds to stream. */
const EXPORTED = 300_000;

describe("serve runs its SQLite queries off the event loop", () => {
  let db: QueryDb;
  let serve: RunningServe;

  beforeAll(async () => {
    db = queryDb("serve-workers-");
    for (let at = 0; at < EXPORTED; at += 30_000) {
      await db.write(
        Array.from({ length: 30_000 }, (_, i) =>
          reading("big", SENSORS[(at + i) % 3] ?? "t", T0 + Math.floor((at + i) / 3) * 1_000, (at + i) % 97, {
            seq: at + i,
          }),
        ),
      );
    }
    await db.write([reading("small", "temperature", T0, 21.5)]);
    serve = await startServe({ dbPath: db.path, host: "127.0.0.1", port: 0 });
  }, 180_000);
  afterAll(async () => {
    await serve?.stop();
    await db?.dispose();
  });

  it("answers /api/latest and /healthz while a big csv export is streaming, and the export stays whole", async () => {
    const res = await fetch(`${serve.url}/api/readings?device=big&format=csv`);
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = "";
    let ended = false;
    let first: () => void = () => {};
    const started = new Promise<void>((resolve) => {
      first = resolve;
    });
    // The export is read as fast as it comes, never paused: the other requests go in while it streams.
    const exported = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        first();
      }
      ended = true;
    })();
    await started;

    const latest = await fetch(`${serve.url}/api/latest`);
    const latestBody = (await latest.json()) as { device_id: string; sensor: string }[];
    const endedAtLatest = ended;
    const health = await fetch(`${serve.url}/healthz`);
    const healthBody = await health.text();
    const endedAtHealth = ended;

    expect(latest.status).toBe(200);
    expect(latestBody.map((r) => `${r.device_id}/${r.sensor}`)).toEqual([
      "big/humidity",
      "big/pressure",
      "big/temperature",
      "small/temperature",
    ]);
    expect(health.status).toBe(200);
    expect(healthBody).toBe("ok\n");
    expect(endedAtLatest, "the export had ended before /api/latest answered").toBe(false);
    expect(endedAtHealth, "the export had ended before /healthz answered").toBe(false);

    await exported;
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toBe("device_id,sensor,ts,value,unit,seq,quality,tags");
    expect(lines).toHaveLength(EXPORTED + 1);
    expect(lines[1]).toBe(`big,humidity,${T0},0,%,0,good,{}`);
    expect(lines.at(-1)).toBe(
      `big,temperature,${T0 + (EXPORTED / 3 - 1) * 1_000},${(EXPORTED - 1) % 97},C,${EXPORTED - 1},good,{}`,
    );
  }, 120_000);

  it("sends a dashboard's answer whole with its length, 304 while the file is unchanged, the new answer once the processor commits; an export streams", async () => {
    const latest = await fetch(`${serve.url}/api/latest?device=small`);
    const body = await latest.text();
    const etag = latest.headers.get("etag") ?? "";
    expect(Number(latest.headers.get("content-length"))).toBe(Buffer.byteLength(body));
    expect((JSON.parse(body) as { value: number }[]).map((r) => r.value)).toEqual([21.5]);
    const held = await fetch(`${serve.url}/api/latest?device=small`, { headers: { "if-none-match": etag } });
    expect(held.status).toBe(304);
    // Another connection's commit changes the version the server reads (PRAGMA data_version on its own connection).
    await db.write([reading("small", "temperature", T0 + 1_000, 22.5)]);
    const changed = await fetch(`${serve.url}/api/latest?device=small`, {
      headers: { "if-none-match": etag },
    });
    expect(changed.status).toBe(200);
    expect(((await changed.json()) as { value: number }[]).map((r) => r.value)).toEqual([22.5]);
    // An export streams, in replies of about 256 KiB, with no length.
    const long = await fetch(`${serve.url}/api/readings?device=big&limit=20000`);
    expect(long.headers.get("content-length")).toBeNull();
    expect((JSON.parse(await long.text()) as { seq: number }[]).map((r) => r.seq)).toEqual(
      Array.from({ length: 20_000 }, (_, i) => i),
    );
  });

  it("keeps answering while one long statement runs (a chart of 100,000 raw points)", async () => {
    let headers = false;
    const slow = fetch(`${serve.url}/api/series?device=big&sensor=humidity&points=100000`).then(
      async (res) => {
        headers = true;
        return { status: res.status, points: ((await res.json()) as unknown[]).length };
      },
    );
    // On the event loop the statement would hold every request until it ends; in a worker, /healthz keeps
    // answering. A count, not a time: how many answers came back before the chart's first byte.
    let answered = 0;
    while (!headers) {
      const res = await fetch(`${serve.url}/healthz`);
      if ((await res.text()) === "ok\n" && !headers) answered++;
    }
    expect(await slow).toEqual({ status: 200, points: EXPORTED / 3 });
    expect(answered).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it("replaces a query worker that died: its open stream fails, the next questions are answered", async () => {
    const pool = await startQueryPool(db.path);
    const text = async (it: AsyncIterable<string | Uint8Array>) => {
      let out = "";
      const decoder = new TextDecoder();
      for await (const chunk of it)
        out += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
      return out + decoder.decode();
    };
    try {
      const latest = { kind: "latest", device: "small" } as const;
      const before = await text(pool.ask(latest, "json"));
      expect(JSON.parse(before)).toHaveLength(1);
      // A long export open on each worker, then both threads end as a crash would.
      const exports = [0, 1].map(() =>
        pool.ask({ kind: "readings", query: { device: "big", order: "asc" } }, "csv"),
      );
      for (const e of exports) expect((await e.next()).done).toBe(false);
      await pool.crashWorker(0);
      await pool.crashWorker(1);
      for (const e of exports) {
        await expect(
          (async () => {
            for (;;) if ((await e.next()).done) return;
          })(),
        ).rejects.toThrow(/query worker exited/);
      }
      // Fresh workers answer, the same as before the crash, and keep answering.
      for (let i = 0; i < 4; i++) expect(await text(pool.ask(latest, "json"))).toBe(before);
    } finally {
      await pool.stop();
    }
  }, 60_000);

  it("ends an export its client left, and stops while one is streaming", async () => {
    const left = await fetch(`${serve.url}/api/readings?device=big&format=ndjson`);
    const leaving = (left.body as ReadableStream<Uint8Array>).getReader();
    await leaving.read();
    await leaving.cancel();
    const res = await fetch(`${serve.url}/api/readings?device=big&format=csv`);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    expect((await reader.read()).done).toBe(false);
    // Still answering after both.
    expect((await fetch(`${serve.url}/api/latest?device=small`)).status).toBe(200);
    await serve.stop();
    await expect(
      (async () => {
        for (;;) if ((await reader.read()).done) return;
      })(),
    ).rejects.toThrow();
  }, 60_000);
});
