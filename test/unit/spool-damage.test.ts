/**
 * A damaged spool costs only the damaged records: the scan and the drain find the next intact record by its header
 * and CRC, and count what was lost in readings. A record larger than the whole spool is never dropped.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { silentLogger } from "../../common/log.js";
import type { OutgoingBatch } from "../../common/outgoing.js";
import { type Delivery, HEALTHY, type Sink } from "../../common/pipeline.js";
import { RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "../../spool/format.js";
import { startSpoolInput } from "../../spool/input.js";
import { scanSegment } from "../../spool/segments.js";
import { type DropReason, type FullPolicy, listSegments, SpoolStore } from "../../spool/store.js";
import { recordOffsets } from "../helpers/spool-files.js";

const READINGS_PER_RECORD = 10;
const RECORDS = 1_000;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function openStore(dir: string, opts: { maxBytes?: number; full?: FullPolicy } = {}) {
  const drops: { reason: DropReason; records: number; messages: number }[] = [];
  const store = SpoolStore.open({
    dir,
    maxBytes: opts.maxBytes ?? 1_048_576, // 64 KiB segments
    maxAgeMs: 86_400_000,
    full: opts.full ?? "block",
    log: silentLogger(),
    onDrop: (reason, records, messages) => drops.push({ reason, records, messages }),
  });
  const corrupt = () => drops.filter((d) => d.reason === "corrupt").reduce((n, d) => n + d.messages, 0);
  return { store, drops, corrupt };
}

/** Record `n`: `READINGS_PER_RECORD` readings whose message ids are `n.0`, `n.1`, ... */
const record = (n: number, bytes = 16): OutgoingBatch =>
  Array.from({ length: READINGS_PER_RECORD }, (_, i) => ({
    route: "readings" as const,
    datum: Buffer.alloc(bytes, n % 256),
    messageId: `${n}.${i}`,
    receivedAt: n,
  }));

const append = (store: SpoolStore, batch: OutgoingBatch) =>
  new Promise<boolean>((resolve) => store.append(batch, resolve));

async function spoolOf(records: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "telemetry-spool-damage-"));
  dirs.push(dir);
  const { store } = openStore(dir);
  await Promise.all(Array.from({ length: records }, (_, n) => append(store, record(n))));
  store.close();
  return dir;
}

function flip(path: string, offsets: readonly number[]): void {
  const bytes = readFileSync(path);
  for (const at of offsets) bytes[at]! ^= 0x40;
  writeFileSync(path, bytes);
}

/** Drains the spool into a sink that confirms at once; the message ids that came out. */
async function drainAll(store: SpoolStore): Promise<string[]> {
  const out: string[] = [];
  const sink: Sink<OutgoingBatch> = {
    write(d: Delivery<OutgoingBatch>) {
      for (const m of d.item) out.push((m as { messageId: string }).messageId);
      setImmediate(d.ack);
    },
    health: () => HEALTHY,
    inFlight: 0,
    stop: async () => undefined,
    [Symbol.asyncDispose]: async () => undefined,
  };
  const input = startSpoolInput(store, sink, { log: silentLogger(), drainTimeoutMs: 0 });
  await vi.waitFor(() => expect(store.depth().records).toBe(0), { timeout: 10_000 });
  await input.stop();
  return out;
}

describe("spool damage", () => {
  it("one flipped byte in the first, a middle and the last record of an older segment costs those three records: the scan goes on at the next intact record", async () => {
    const dir = await spoolOf(RECORDS);
    const segments = listSegments(dir);
    expect(segments.length).toBeGreaterThan(3);
    const older = segments[1]!;
    const offsets = recordOffsets(older.path);
    const hit = [0, Math.floor(offsets.length / 2), offsets.length - 1];
    // Inside each record's payload, past its header.
    flip(
      older.path,
      hit.map((i) => offsets[i]! + RECORD_HEADER_BYTES + 20),
    );

    const scan = scanSegment(older.path, { verify: true });
    expect(scan.damage.map((d) => [d.fromSeq, d.toSeq, d.offset, d.messages])).toEqual(
      hit.map((i) => [older.first + i, older.first + i + 1, offsets[i], READINGS_PER_RECORD]),
    );
    expect(scan.damage.every((d) => /fails its CRC/.test(d.why))).toBe(true);
    expect(scan.tail).toBeUndefined();
    expect(scan.summary.records).toBe(offsets.length);
  });

  it("10,000 readings in, 10,000 minus the hit records' readings drained, and the corrupt count equal to the loss, a flipped record count included", async () => {
    const dir = await spoolOf(RECORDS);
    const older = listSegments(dir)[1]!;
    const offsets = recordOffsets(older.path);
    const hit = [0, Math.floor(offsets.length / 2), offsets.length - 1];
    flip(older.path, [
      offsets[hit[0]!]! + RECORD_HEADER_BYTES + 3,
      offsets[hit[1]!]! + 26, // the header's readings count: only the trailer can tell what was lost
      offsets[hit[2]!]! + RECORD_HEADER_BYTES + 40,
    ]);
    const { store, corrupt, drops } = openStore(dir);
    const out = await drainAll(store);
    const lost = new Set(hit.map((i) => older.first + i));
    const expected: string[] = [];
    for (let n = 0; n < RECORDS; n++) {
      if (lost.has(n)) continue;
      for (let i = 0; i < READINGS_PER_RECORD; i++) expected.push(`${n}.${i}`);
    }
    expect(out.sort()).toEqual(expected.sort());
    expect(out).toHaveLength(RECORDS * READINGS_PER_RECORD - 3 * READINGS_PER_RECORD);
    expect(corrupt()).toBe(3 * READINGS_PER_RECORD);
    expect(drops.filter((d) => d.reason === "corrupt").reduce((n, d) => n + d.records, 0)).toBe(3);
    store.close();
  });

  it("a flipped byte in the middle of the newest segment is skipped at open, not cut: the records after it survive", async () => {
    const dir = await spoolOf(20);
    const newest = listSegments(dir).at(-1)!.path;
    const offsets = recordOffsets(newest);
    flip(newest, [offsets[5]! + RECORD_HEADER_BYTES + 1]);
    const { store, corrupt } = openStore(dir);
    const out = await drainAll(store);
    expect(out).toHaveLength(19 * READINGS_PER_RECORD);
    expect(out.some((id) => id.startsWith("5."))).toBe(false);
    expect(corrupt()).toBe(READINGS_PER_RECORD);
    store.close();
  });

  it("a newest segment holding only its header, or part of it (killed right after creating it), opens", async () => {
    const dir = await spoolOf(20);
    const { store } = openStore(dir);
    store.close(); // leaves a new, empty active segment: 16 bytes
    const newest = listSegments(dir).at(-1)!.path;
    expect(statSync(newest).size).toBe(SEGMENT_HEADER_BYTES);
    const again = openStore(dir);
    again.store.close();
    truncateSync(listSegments(dir).at(-1)!.path, 7);
    const third = openStore(dir);
    expect(await drainAll(third.store)).toHaveLength(20 * READINGS_PER_RECORD);
    expect(third.corrupt()).toBe(0);
    third.store.close();
  });

  it("a torn tail cut at open (a kill mid-append) is counted with the readings its header names", async () => {
    const dir = await spoolOf(20);
    const newest = listSegments(dir).at(-1)!.path;
    truncateSync(newest, statSync(newest).size - 7);
    const { store, corrupt, drops } = openStore(dir);
    expect(corrupt()).toBe(READINGS_PER_RECORD);
    expect(drops.find((d) => d.reason === "corrupt")?.records).toBe(1);
    expect(await drainAll(store)).toHaveLength(19 * READINGS_PER_RECORD);
    store.close();
  });
});

describe("spool: a record larger than the spool", () => {
  const HUGE_DATUM = 120_000; // x 10 readings: about 1.2 MB, more than a 1 MiB spool
  it.each(["block", "drop-oldest", "drop-newest"] as const)(
    "SPOOL_FULL=%s: handed to the uplink when there is one, never dropped; without one held unacknowledged, readiness saying why",
    async (full) => {
      const dir = mkdtempSync(join(tmpdir(), "telemetry-spool-huge-"));
      dirs.push(dir);
      const { store, drops } = openStore(dir, { full });
      for (let n = 0; n < 100; n++) await append(store, record(n, 500));
      const handed: number[] = [];
      let settled = false;
      store.append(
        record(1_000, HUGE_DATUM),
        () => {
          settled = true;
        },
        (bytes) => handed.push(bytes),
      );
      await vi.waitFor(() => expect(handed).toHaveLength(1));
      expect(handed[0]).toBeGreaterThan(1_048_576);
      // The records behind it go on; nothing was dropped to make room.
      expect(await append(store, record(2_000))).toBe(true);
      expect(drops).toEqual([]);
      expect(store.depth().messages).toBe(101 * READINGS_PER_RECORD);

      store.append(record(3_000, HUGE_DATUM), () => {
        settled = true;
      });
      await vi.waitFor(() => expect(store.health().ready).toBe(false));
      expect(store.health()).toMatchObject({
        reason: expect.stringMatching(/cannot fit SPOOL_MAX_BYTES 1048576 even empty: held, not PUBACKed/),
      });
      expect(settled).toBe(false);
      expect(drops).toEqual([]);
      expect(store.depth().messages).toBe(101 * READINGS_PER_RECORD);
      store.close();
    },
  );

  it("SPOOL_FULL=block: a record needing nearly the whole spool waits for the drain instead of being dropped", async () => {
    const dir = mkdtempSync(join(tmpdir(), "telemetry-spool-big-"));
    dirs.push(dir);
    const { store, drops } = openStore(dir, { full: "block" });
    // 52 KB in the active segment (the only one), then a record of 1,020,236 bytes: it fits an empty spool only.
    for (let n = 0; n < 10; n++) await append(store, record(n, 500));
    expect(store.depth().segments).toBe(1);
    let stored: boolean | undefined;
    store.append(record(100, 102_000), (ok) => {
      stored = ok;
    });
    await vi.waitFor(() => expect(store.full).toBe(true));
    expect(stored).toBeUndefined();
    for (let seq = 0; seq < 10; seq++) store.markDone(seq, READINGS_PER_RECORD);
    await vi.waitFor(() => expect(stored).toBe(true), { timeout: 5_000 });
    expect(drops).toEqual([]);
    store.close();
  });
});
