/**
 * The abuses of issue 26, each looped against a real `telemetry serve` (dist/, npm run build first) on a store of
 * 20,000 readings, with serve's resident memory read from /proc before and after: HEAD requests of an export,
 * century-long questions, and questions that run into SERVE_QUERY_TIMEOUT while their clients read nothing.
 * Memory must grow by less than GROWTH_MB over a loop: a generous margin on a loaded machine, where today's leaks
 * grew by hundreds of MB. The figures are printed for the record, never compared with a time.
 */
import { once } from "node:events";
import { type IncomingMessage, request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type QueryDb, queryDb, reading } from "../helpers/query-db.js";
import { ask, type ServeProcess, startServeProcess } from "../helpers/serve-process.js";

const READINGS = 20_000;
const GROWTH_MB = 50;
const MIN = 60_000;
const T0 = Date.UTC(2026, 0, 1);
/** Rounds before memory is measured: the first large answers grow serve's heap to its working size (about 190 MB). */
const WARM_UP = 4;

/** Runs `n` requests made by `one`, `parallel` at a time. */
async function loop(n: number, parallel: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) await one(next++);
    }),
  );
}

/**
 * Starts a GET whose client reads nothing of its body. `cutOff()` (to call once the server has given up on it)
 * reads the rest and resolves whether the answer was cut off rather than whole.
 */
async function unread(url: string): Promise<{ status: number; cutOff: () => Promise<boolean> }> {
  const req = request(url);
  req.end();
  const [res] = (await once(req, "response")) as [IncomingMessage];
  res.pause();
  const cutOff = () =>
    new Promise<boolean>((resolve) => {
      res.on("error", () => resolve(true));
      res.on("close", () => resolve(!res.complete));
      res.resume();
    });
  return { status: res.statusCode ?? 0, cutOff };
}

/** How many questions serve has reported cancelled at their deadline so far. */
const cancelled = (s: ServeProcess) =>
  s
    .log()
    .split("\n")
    .filter((l) => l.includes("SERVE_QUERY_TIMEOUT")).length;

describe("serve under abuse: memory stays flat", () => {
  let db: QueryDb;
  let serve: ServeProcess;
  const figures: string[] = [];

  beforeAll(async () => {
    db = queryDb("serve-abuse-");
    await db.write(Array.from({ length: READINGS }, (_, i) => reading("D", "S", T0 + i * MIN, i % 100)));
    serve = await startServeProcess({
      DB_PATH: db.path,
      SERVE_QUERY_TIMEOUT: "1s",
      // Large enough for the questions that run into the timeout; the refusals use the default elsewhere.
      SERVE_MAX_BUCKETS: "100000000",
      SERVE_MAX_EXPORTS: "64",
    });
  });
  afterAll(async () => {
    await serve?.stop();
    await db?.dispose();
    console.log(`serve-security-abuse figures:\n${figures.join("\n")}`);
  });

  it("1,500 HEAD requests of a csv export run no export and keep nothing", async () => {
    const url = `${serve.url}/api/readings?device=D&format=csv`;
    expect((await ask(url)).body.trim().split("\n")).toHaveLength(READINGS + 1);
    const before = serve.rssMb();
    await loop(1_500, 8, async () => {
      const r = await ask(url, { method: "HEAD" });
      expect(r.status).toBe(200);
      expect(r.body).toBe("");
    });
    const after = serve.rssMb();
    figures.push(`HEAD x1500: RSS ${before.toFixed(0)} MB -> ${after.toFixed(0)} MB`);
    expect(after - before).toBeLessThan(GROWTH_MB);
  });

  it("100 century-long stats questions are refused with 400 naming the limit, and cost nothing", async () => {
    const plain = await startServeProcess({ DB_PATH: db.path });
    try {
      const url = `${plain.url}/api/stats?device=D&sensor=S&every=1m&fill=null&from=-1400000w`;
      const before = plain.rssMb();
      await loop(100, 4, async () => {
        const r = await ask(url);
        expect(r.status).toBe(400);
        expect(JSON.parse(r.body).error).toMatch(/100,000 \(SERVE_MAX_BUCKETS\)/);
      });
      const after = plain.rssMb();
      figures.push(`refused century-long x100: RSS ${before.toFixed(0)} MB -> ${after.toFixed(0)} MB`);
      expect(after - before).toBeLessThan(GROWTH_MB);
    } finally {
      await plain.stop();
    }
  });

  it("questions running into SERVE_QUERY_TIMEOUT are cancelled and closed, /api/latest answers meanwhile", async () => {
    // Fifty million empty minutes: far longer than the timeout, at any speed this machine has.
    const long = `${serve.url}/api/stats?device=D&sensor=S&every=1m&fill=null&from=-5000w`;
    const latest = `${serve.url}/api/latest`;
    expect((await ask(latest)).status).toBe(200);
    const first = serve.rssMb();
    let before = first;
    const latestMs: number[] = [];
    for (let round = 0; round < WARM_UP + 12; round++) {
      // Two at once, as many as there are query workers, their clients reading nothing.
      if (round === WARM_UP) before = serve.rssMb();
      const held = await Promise.all([unread(long), unread(long)]);
      expect(held.map((h) => h.status)).toEqual([200, 200]);
      const started = performance.now();
      const r = await ask(latest);
      latestMs.push(performance.now() - started);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual([expect.objectContaining({ device_id: "D", sensor: "S" })]);
      // The server ends both: a question past its deadline is cancelled, its answer cut off.
      await expect.poll(() => cancelled(serve), { timeout: 30_000 }).toBe(2 * (round + 1));
      expect(await Promise.all(held.map((h) => h.cutOff()))).toEqual([true, true]);
    }
    const after = serve.rssMb();
    latestMs.sort((a, b) => a - b);
    figures.push(
      `timed-out questions 16x2: RSS ${first.toFixed(0)} MB at first, ${before.toFixed(0)} MB after ${WARM_UP} ` +
        `rounds, ${after.toFixed(0)} MB after 12 more; /api/latest meanwhile median ` +
        `${latestMs[latestMs.length >> 1]?.toFixed(1)} ms, max ${latestMs.at(-1)?.toFixed(1)} ms`,
    );
    expect(after - before).toBeLessThan(GROWTH_MB);
  });

  it("questions whose clients read as fast as they can hold no more memory while they stream, and are cut off at the timeout", async () => {
    // A longer deadline than the others: memory held per chunk streamed would show as growth during the stream.
    const fast = await startServeProcess({
      DB_PATH: db.path,
      SERVE_QUERY_TIMEOUT: "4s",
      SERVE_MAX_BUCKETS: "100000000",
    });
    try {
      const long = `${fast.url}/api/stats?device=D&sensor=S&every=1m&fill=null&from=-5000w&format=ndjson`;
      const read = () =>
        new Promise<{ bytes: number; complete: boolean }>((resolve) => {
          let bytes = 0;
          const req = request(long, (res) => {
            res.on("data", (d: Buffer) => {
              bytes += d.length;
            });
            res.on("error", () => resolve({ bytes, complete: false }));
            res.on("close", () => resolve({ bytes, complete: res.complete }));
          });
          req.on("error", () => resolve({ bytes, complete: false }));
          req.end();
        });
      const idle = fast.rssMb();
      let before = idle;
      let peak = 0;
      let streamed = 0;
      for (let round = 0; round < 3; round++) {
        // Round 0 warms up: the first large answers grow the heap to its working size.
        if (round === 1) before = fast.rssMb();
        const sampler = setInterval(() => {
          if (round > 0) peak = Math.max(peak, fast.rssMb());
        }, 200);
        const got = await Promise.all([read(), read()]);
        clearInterval(sampler);
        for (const g of got) expect(g.complete).toBe(false);
        if (round > 0) streamed += got[0]?.bytes ?? 0;
      }
      figures.push(
        `fast readers cut off at 4 s, 2x2 after a warm-up round: RSS ${idle.toFixed(0)} MB idle, ` +
          `${before.toFixed(0)} MB after the warm-up, peak ` +
          `${peak.toFixed(0)} MB while streaming (one client read ${(streamed / 2 / 1_048_576).toFixed(0)} MB a round)`,
      );
      expect(peak - before).toBeLessThan(GROWTH_MB);
      // The working size of a server streaming two exports, with a wide margin (chunks kept until the deadline
      // made it grow by some 100 MB a second).
      expect(peak - idle).toBeLessThan(3 * GROWTH_MB);
    } finally {
      await fast.stop();
    }
  });
});
