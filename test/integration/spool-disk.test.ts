/**
 * The spool on a disk that fails for real: a small tmpfs filled up (ENOSPC), remounted read-only (EROFS), and a
 * spool directory made unwritable under a gateway running as an unprivileged user (EACCES; root ignores
 * permissions). The gateway never exits: /readyz answers 503 naming the error, PUBACKs are held, the operation is
 * retried with backoff, and once the disk is back every reading is stored exactly once. Needs root (mount,
 * setpriv), as the test machines run.
 */
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../common/log.js";
import { HEALTHY } from "../../common/pipeline.js";
import { SpoolStore } from "../../spool/store.js";
import {
  expectStoredExactlyOnce,
  metric,
  report,
  type Stream,
  type StreamCounts,
  startStream,
  until,
} from "../helpers/fault-stream.js";
import { type PrivatePipeline, privateBrokersPerFile } from "../helpers/private-pipeline.js";
import { httpGet, type Service, type TestNames, untilReady } from "../helpers/services.js";

const TMPFS_BYTES = "2m";
const READINGS = 3_000;
/** The MQTT window: while the disk is broken the gateway holds at most this many unacknowledged. */
const INFLIGHT = 500;
const RATE = 1_000;
const STORED_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 300_000;
/** Long enough for a few backoff rounds (1 s, 2 s, 4 s ...) while the disk stays broken. */
const BROKEN_MS = 5_000;
const NOBODY = 65_534;
const UNPRIVILEGED = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"];

const mounts: string[] = [];
const dirs: string[] = [];

/** A fresh tmpfs of `size`, unmounted after the tests. */
function tmpfs(size: string): string {
  const dir = mkdtempSync(join(tmpdir(), "telemetry-spool-disk-"));
  dirs.push(dir);
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir]);
  mounts.push(dir);
  return dir;
}

/** Fills the file system holding `dir` with one file until it refuses (ENOSPC); returns the file. */
function fill(dir: string): string {
  const path = join(dir, "filler");
  const fd = openSync(path, "w");
  const block = Buffer.alloc(4_096, 0xaa);
  try {
    for (;;) writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    closeSync(fd);
  }
  return path;
}

afterAll(() => {
  for (const m of mounts.splice(0)) execFileSync("umount", ["-l", m]);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("spool store on a full tmpfs", () => {
  it("ENOSPC while appending and while sealing a segment never throws: acks held, health names ENOSPC, all stored whole and in order once space is back", async () => {
    const disk = tmpfs("1m");
    const store = SpoolStore.open({
      dir: join(disk, "spool"),
      maxBytes: 1_048_576, // 64 KiB segments: a seal every ~60 records of 1 KB
      maxAgeMs: 86_400_000,
      full: "block",
      log: silentLogger(),
    });
    const filler = fill(disk);
    const acked: number[] = [];
    const errors: unknown[] = [];
    const onError = (err: unknown) => errors.push(err);
    process.on("unhandledRejection", onError);
    try {
      for (let n = 0; n < 200; n++) {
        store.append(
          [{ route: "readings", datum: Buffer.alloc(1_000, n), messageId: `m${n}`, receivedAt: n }],
          () => acked.push(n),
        );
      }
      await vi.waitFor(() => expect(store.health().ready).toBe(false), { timeout: 10_000 });
      expect(store.health()).toMatchObject({ reason: expect.stringMatching(/spool disk error.*ENOSPC/) });
      const heldAt = acked.length;
      expect(heldAt).toBeLessThan(200);
      await new Promise((r) => setTimeout(r, 2_000));
      expect(acked.length).toBe(heldAt);

      rmSync(filler);
      await vi.waitFor(() => expect(acked.length).toBe(200), { timeout: 40_000 });
      expect(acked).toEqual(Array.from({ length: 200 }, (_, n) => n));
      await vi.waitFor(() => expect(store.health()).toEqual(HEALTHY), { timeout: 40_000 });
      expect(store.depth()).toMatchObject({ records: 200, messages: 200 });
      // Every record acknowledged reads back whole: a short write (what fit before ENOSPC) was never taken as done.
      const reader = store.reader();
      const { records } = await reader.read(0, 200, 1_000);
      await reader.close();
      expect(records.map((r) => (r.batch[0] as { messageId: string }).messageId)).toEqual(
        Array.from({ length: 200 }, (_, n) => `m${n}`),
      );
      expect(store.depth().segments).toBeGreaterThan(2);
      expect(errors).toEqual([]);
    } finally {
      process.off("unhandledRejection", onError);
      store.close();
    }
  });
});

describe("gateway spool on a failing disk", () => {
  // max_queued_messages 0: what the gateway does not take stays queued in its session.
  const brokers = privateBrokersPerFile({ mosquitto: { maxQueued: 0 } });

  /** Starts a gateway spooling into `spool` and a processor on `run`; returns the gateway. */
  async function pipeline(
    run: PrivatePipeline,
    spool: string,
    prefix: readonly string[] = [],
  ): Promise<Service> {
    const g = await run.gateway(
      {
        SPOOL_PATH: spool,
        SPOOL_MAX_BYTES: "1MiB", // 64 KiB segments: a new segment file every ~400 readings
        GATEWAY_INFLIGHT: String(INFLIGHT),
        DRAIN_TIMEOUT: "1s",
      },
      prefix,
    );
    await untilReady(g);
    await run.processor();
    return g;
  }

  /** While the disk is broken: 503 naming `code`, the gateway alive, PUBACKs held (nothing more taken). */
  async function expectHeld(g: Service, code: string): Promise<number> {
    await until(`/readyz names ${code}`, 30_000, async () => {
      const r = await httpGet(g.httpPort, "/readyz");
      return r.status === 503 && r.body.includes(code);
    });
    await until("PUBACKs held: nothing more taken", 30_000, async () => {
      const before = await metric(g.httpPort, "telemetry_gateway_messages_received_total");
      await new Promise((r) => setTimeout(r, 1_000));
      return (await metric(g.httpPort, "telemetry_gateway_messages_received_total")) === before;
    });
    const held = await metric(g.httpPort, "telemetry_gateway_messages_received_total");
    await new Promise((r) => setTimeout(r, BROKEN_MS));
    expect((await httpGet(g.httpPort, "/readyz")).status).toBe(503);
    expect(await metric(g.httpPort, "telemetry_gateway_messages_received_total")).toBe(held);
    expect(
      g.logs.some((l) => l.msg === "spool disk operation failed; PUBACKs held, retrying" && l.code === code),
    ).toBe(true);
    return held;
  }

  /** Once the disk is back: every reading stored exactly once, the gateway ready again, never exited, none dropped. */
  async function expectHealed(g: Service, names: TestNames, stream: Stream): Promise<StreamCounts> {
    const counts = await expectStoredExactlyOnce(names, stream, STORED_TIMEOUT_MS);
    await until(
      "the gateway ready again",
      60_000,
      async () => (await httpGet(g.httpPort, "/readyz")).status === 200,
    );
    expect(g.proc.exitCode).toBeNull();
    expect(await metric(g.httpPort, "telemetry_gateway_spool_dropped_total")).toBe(0);
    return counts;
  }

  it(
    "a full spool tmpfs (ENOSPC): /readyz 503 naming it, PUBACKs held, no exit; space back: ready, every reading stored exactly once",
    async () => {
      await using run = await brokers().pipeline("spool-disk-enospc");
      const { names } = run;
      const disk = tmpfs(TMPFS_BYTES);
      const g = await pipeline(run, join(disk, "spool"));
      const filler = fill(disk);
      const stream = startStream(names, { count: READINGS, rate: RATE, seed: 3_101 });
      const held = await expectHeld(g, "ENOSPC");
      expect(held).toBeLessThan(READINGS);
      expect(await metric(g.httpPort, "telemetry_gateway_inflight_messages")).toBeGreaterThan(0);

      rmSync(filler);
      const counts = await expectHealed(g, names, stream);
      report("spool: disk full (tmpfs)", { ...counts, takenWhileFull: held });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a spool tmpfs remounted read-only (EROFS): /readyz 503 naming it, PUBACKs held, no exit; read-write again: every reading stored exactly once",
    async () => {
      await using run = await brokers().pipeline("spool-disk-erofs");
      const { names } = run;
      const disk = tmpfs(TMPFS_BYTES);
      const g = await pipeline(run, join(disk, "spool"));
      // Before any reading: the gateway holds no file open for writing yet, so the kernel lets the remount happen.
      execFileSync("mount", ["-o", "remount,ro", disk]);
      const stream = startStream(names, { count: READINGS, rate: RATE, seed: 3_103 });
      const held = await expectHeld(g, "EROFS");
      expect(held).toBeLessThan(READINGS);

      execFileSync("mount", ["-o", "remount,rw", disk]);
      const counts = await expectHealed(g, names, stream);
      report("spool: disk read-only (EROFS)", { ...counts, takenWhileReadOnly: held });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a spool directory made unwritable under an unprivileged gateway (EACCES): /readyz 503 naming it, no exit; writable again: every reading stored exactly once",
    async () => {
      await using run = await brokers().pipeline("spool-disk-eacces");
      const { names } = run;
      const parent = mkdtempSync(join(tmpdir(), "telemetry-spool-eacces-"));
      dirs.push(parent);
      chmodSync(parent, 0o755);
      const spool = join(parent, "spool");
      mkdirSync(spool);
      chownSync(spool, NOBODY, NOBODY);
      const g = await pipeline(run, spool, UNPRIVILEGED);
      const stream = startStream(names, { count: READINGS, rate: RATE, seed: 3_102 });
      await until("some readings taken", 30_000, async () => {
        return (await metric(g.httpPort, "telemetry_gateway_messages_received_total")) > 100;
      });
      // New segments cannot be created nor done ones deleted: sealing and the drain's deletes fail (appends to the
      // segment already open go on until it is due to be sealed).
      chmodSync(spool, 0o555);
      const held = await expectHeld(g, "EACCES");
      expect(held).toBeLessThan(READINGS);

      chmodSync(spool, 0o755);
      const counts = await expectHealed(g, names, stream);
      report("spool: directory unwritable (EACCES)", { ...counts, takenWhileUnwritable: held });
    },
    TEST_TIMEOUT_MS,
  );
});
