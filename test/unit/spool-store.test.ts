import { spawn } from "node:child_process";
import {
  appendFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../common/log.js";
import type { OutgoingBatch } from "../../common/outgoing.js";
import type { Delivery, Sink } from "../../common/pipeline.js";
import { HEALTHY } from "../../common/pipeline.js";
import { startSpoolInput } from "../../spool/input.js";
import { type DropReason, type FullPolicy, listSegments, SpoolStore } from "../../spool/store.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "telemetry-spool-unit-"));
  dirs.push(d);
  return d;
}

const item = (n: number, bytes = 16): OutgoingBatch => [
  { route: "readings", datum: Buffer.alloc(bytes, n % 256), messageId: `m${n}`, receivedAt: n },
];
const numberOf = (b: OutgoingBatch): number => Number((b[0] as { messageId: string }).messageId.slice(1));

function openStore(dir: string, opts: { maxBytes?: number; maxAgeMs?: number; full?: FullPolicy } = {}) {
  const drops: { reason: DropReason; records: number; messages: number }[] = [];
  const store = SpoolStore.open({
    dir,
    maxBytes: opts.maxBytes ?? 1_073_741_824,
    maxAgeMs: opts.maxAgeMs ?? 86_400_000,
    full: opts.full ?? "block",
    log: silentLogger(),
    onDrop: (reason, records, messages) => drops.push({ reason, records, messages }),
  });
  return { store, drops };
}

const append = (store: SpoolStore, batch: OutgoingBatch) =>
  new Promise<boolean>((resolve) => store.append(batch, resolve));

async function readAll(store: SpoolStore): Promise<number[]> {
  const r = store.reader();
  const out: number[] = [];
  let from = store.firstNotDone;
  for (;;) {
    const { records, next } = await r.read(from, Number.POSITIVE_INFINITY, 1_000);
    out.push(...records.map((x) => numberOf(x.batch)));
    if (records.length === 0) break;
    from = next;
  }
  await r.close();
  return out;
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const newestSegment = (dir: string) => listSegments(dir).at(-1)!.path;

describe("spool store", () => {
  it("an append is acknowledged once durable and is read back in order after the spool is reopened", async () => {
    const dir = tempDir();
    const { store } = openStore(dir);
    const acks = await Promise.all(range(0, 500).map((n) => append(store, item(n))));
    expect(acks.every(Boolean)).toBe(true);
    expect(store.depth()).toMatchObject({ records: 500, messages: 500 });
    store.close();
    const again = openStore(dir).store;
    expect(await readAll(again)).toEqual(range(0, 500));
    again.close();
  });

  it("many appends share one fsync (group commit)", async () => {
    const { store } = openStore(tempDir());
    const started = Date.now();
    await Promise.all(range(0, 5_000).map((n) => append(store, item(n))));
    // One fsync per append would take seconds on most disks; a group commit takes a handful.
    expect(store.depth().records).toBe(5_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    store.close();
  });

  it("a torn write at the end (a crash mid-append) is cut off at open; everything before it survives", async () => {
    const dir = tempDir();
    const { store } = openStore(dir);
    for (const n of range(0, 20)) await append(store, item(n));
    store.close();
    const seg = newestSegment(dir);
    // Half a record: what a crash leaves when the write reached the disk partly.
    truncateSync(seg, statSync(seg).size - 7);
    const reopened = openStore(dir).store;
    expect(await readAll(reopened)).toEqual(range(0, 19));
    await append(reopened, item(100));
    reopened.close();
    const third = openStore(dir).store;
    expect(await readAll(third)).toEqual([...range(0, 19), 100]);
    third.close();
  });

  it("garbage after the last record and a record failing its CRC are cut off at open, never a refusal to start", async () => {
    const dir = tempDir();
    const { store } = openStore(dir);
    for (const n of range(0, 10)) await append(store, item(n, 64));
    store.close();
    const seg = newestSegment(dir);
    const bytes = readFileSync(seg);
    bytes[bytes.length - 10]! ^= 0xff; // inside the last record's payload
    writeFileSync(seg, bytes);
    appendFileSync(seg, Buffer.from("garbage from a torn page"));
    const reopened = openStore(dir).store;
    expect(await readAll(reopened)).toEqual(range(0, 9));
    reopened.close();
  });

  it("records confirmed downstream are not read again after reopening, and their segment files are deleted", async () => {
    const dir = tempDir();
    const { store } = openStore(dir, { maxBytes: 1_048_576 }); // 64 KiB segments
    await Promise.all(range(0, 3_000).map((n) => append(store, item(n, 100))));
    const segmentsBefore = listSegments(dir).length;
    expect(segmentsBefore).toBeGreaterThan(3);
    for (const seq of range(0, 2_000)) store.markDone(seq, 1);
    expect(listSegments(dir).length).toBeLessThan(segmentsBefore);
    expect(store.depth()).toMatchObject({ records: 1_000, messages: 1_000 });
    store.close();
    const reopened = openStore(dir).store;
    expect(await readAll(reopened)).toEqual(range(2_000, 1_000));
    reopened.close();
  });

  it("confirms out of order free only the done prefix; the rest is read again after reopening", async () => {
    const dir = tempDir();
    const { store } = openStore(dir);
    for (const n of range(0, 10)) await append(store, item(n));
    for (const seq of [0, 1, 5, 6, 2]) store.markDone(seq, 1);
    expect(store.firstNotDone).toBe(3);
    expect(store.depth().records).toBe(5);
    store.close();
    const reopened = openStore(dir).store;
    expect(await readAll(reopened)).toEqual(range(3, 7));
    reopened.close();
  });

  it("full with SPOOL_FULL=block: appends wait unacknowledged and readiness says so, until confirms free space", async () => {
    const dir = tempDir();
    const { store, drops } = openStore(dir, { maxBytes: 1_048_576, full: "block" });
    let acked = 0;
    for (const n of range(0, 2_000)) store.append(item(n, 1_000), () => acked++);
    await vi.waitFor(() => expect(store.full).toBe(true));
    const held = 2_000 - acked;
    expect(held).toBeGreaterThan(0);
    expect(store.health()).toMatchObject({ ready: false });
    expect(store.depth().bytes).toBeLessThanOrEqual(1_048_576);
    // Confirming what is stored frees whole segments; the held appends go in as room appears.
    await vi.waitFor(() => {
      for (const seq of range(store.firstNotDone, acked - store.firstNotDone)) store.markDone(seq, 1);
      expect(acked).toBe(2_000);
    });
    expect(store.health()).toEqual(HEALTHY);
    expect(drops).toEqual([]);
    store.close();
  });

  it("full with SPOOL_FULL=drop-newest: new readings are acknowledged and dropped, counted; the spool keeps its oldest", async () => {
    const dir = tempDir();
    const { store, drops } = openStore(dir, { maxBytes: 1_048_576, full: "drop-newest" });
    const results = await Promise.all(range(0, 2_000).map((n) => append(store, item(n, 1_000))));
    const kept = await readAll(store);
    expect(kept[0]).toBe(0);
    const dropped = drops.filter((d) => d.reason === "drop-newest").reduce((n, d) => n + d.messages, 0);
    expect(results.filter((ok) => !ok)).toHaveLength(dropped);
    expect(kept.length + dropped).toBe(2_000);
    expect(store.depth().bytes).toBeLessThanOrEqual(1_048_576);
    store.close();
  });

  it("full with SPOOL_FULL=drop-oldest: whole oldest segments go, counted; the newest readings are kept within the bound", async () => {
    const dir = tempDir();
    const { store, drops } = openStore(dir, { maxBytes: 1_048_576, full: "drop-oldest" });
    await Promise.all(range(0, 2_000).map((n) => append(store, item(n, 1_000))));
    const kept = await readAll(store);
    expect(kept.at(-1)).toBe(1_999);
    const dropped = drops.filter((d) => d.reason === "drop-oldest").reduce((n, d) => n + d.messages, 0);
    expect(dropped).toBeGreaterThan(0);
    expect(kept).toEqual(range(dropped, 2_000 - dropped));
    expect(store.depth().bytes).toBeLessThanOrEqual(1_048_576);
    expect(store.depth().messages).toBe(kept.length);
    store.close();
  });

  it("readings older than SPOOL_MAX_AGE are dropped a segment at a time, counted", async () => {
    const dir = tempDir();
    const { store, drops } = openStore(dir, { maxAgeMs: 400 });
    for (const n of range(0, 10)) await append(store, item(n));
    const aged = () => drops.filter((d) => d.reason === "max-age").reduce((n, d) => n + d.messages, 0);
    await vi.waitFor(() => expect(aged()).toBe(10), { timeout: 5_000 });
    await append(store, item(10));
    expect(await readAll(store)).toEqual([10]);
    store.close();
  });

  it("opening a spool of many segments reads their trailers, not their records", async () => {
    const dir = tempDir();
    const { store } = openStore(dir, { maxBytes: 1_048_576 });
    await Promise.all(range(0, 3_000).map((n) => append(store, item(n, 200))));
    store.close();
    expect(readdirSync(dir).filter((f) => f.endsWith(".seg")).length).toBeGreaterThan(10);
    const reopened = openStore(dir).store;
    expect(reopened.depth()).toMatchObject({ records: 3_000, messages: 3_000 });
    expect(await readAll(reopened)).toEqual(range(0, 3_000));
    reopened.close();
  });
});

/** A sink that holds deliveries until told to confirm them. */
class HoldingSink implements Sink<OutgoingBatch> {
  readonly held: Delivery<OutgoingBatch>[] = [];
  readonly order: number[] = [];
  write(d: Delivery<OutgoingBatch>): void {
    this.order.push(numberOf(d.item));
    this.held.push(d);
  }
  confirmAll(): void {
    for (const d of this.held.splice(0)) d.ack();
  }
  get inFlight() {
    return this.held.length;
  }
  health() {
    return HEALTHY;
  }
  async stop() {}
  async [Symbol.asyncDispose]() {}
}

describe("spool lock", () => {
  it("a second gateway on the same spool is refused while the first one lives, and takes over once it is gone", async () => {
    const dir = tempDir();
    const other = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"]);
    try {
      writeFileSync(join(dir, "lock"), `${other.pid}\n`);
      expect(() => openStore(dir)).toThrow(/in use by process/);
    } finally {
      other.kill("SIGKILL");
      await new Promise((resolve) => other.once("exit", resolve));
    }
    const { store } = openStore(dir);
    await append(store, item(1));
    store.close();
  });
});

describe("spool input (drain)", () => {
  it("a live reading is sent within a window while a backlog of 20,000 drains, not after the backlog", async () => {
    const dir = tempDir();
    const { store } = openStore(dir);
    await Promise.all(range(0, 20_000).map((n) => append(store, item(n))));
    const sink = new HoldingSink();
    const input = startSpoolInput(store, sink, { log: silentLogger(), drainTimeoutMs: 0 });
    await vi.waitFor(() => expect(sink.held.length).toBeGreaterThan(0));
    await append(store, item(1_000_000));
    for (let i = 0; i < 10 && !sink.order.includes(1_000_000); i++) {
      sink.confirmAll();
      await new Promise((r) => setImmediate(r));
      await vi.waitFor(() => expect(sink.held.length).toBeGreaterThan(0));
    }
    const at = sink.order.indexOf(1_000_000);
    expect(at).toBeGreaterThan(0);
    expect(at).toBeLessThan(10_000);
    // Everything arrives, once each, and the spool empties.
    for (let i = 0; i < 200 && store.depth().records > 0; i++) {
      sink.confirmAll();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(store.depth().records).toBe(0);
    expect(new Set(sink.order).size).toBe(20_001);
    await input.stop();
    store.close();
  });
});
