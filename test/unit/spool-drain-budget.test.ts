import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ByteBudget } from "../../common/byte-budget.js";
import { silentLogger } from "../../common/log.js";
import { HELD_BYTES_PER_MESSAGE, type OutgoingBatch } from "../../common/outgoing.js";
import { type Delivery, HEALTHY, type Health, type Sink } from "../../common/pipeline.js";
import { startSpoolInput } from "../../spool/input.js";
import { SpoolStore } from "../../spool/store.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const MIB = 1_048_576;
/** What one record of a 100,000-byte datum holds, as the budget counts it. */
const RECORD_HELD = 100_000 + HELD_BYTES_PER_MESSAGE;

/** A sink that keeps every delivery until the test confirms it, as RabbitMQ blocking publishers would. */
class HoldingSink implements Sink<OutgoingBatch> {
  readonly held: Delivery<OutgoingBatch>[] = [];
  confirmed = 0;
  write(delivery: Delivery<OutgoingBatch>): void {
    this.held.push(delivery);
  }
  confirmAll(): void {
    for (const d of this.held.splice(0)) {
      d.ack();
      this.confirmed++;
    }
  }
  get inFlight(): number {
    return this.held.length;
  }
  health(): Health {
    return HEALTHY;
  }
  async stop(): Promise<void> {}
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** A spool holding `records` records of one reading whose datum is `bytes` long. */
async function spoolOf(records: number, bytes: number): Promise<SpoolStore> {
  const dir = mkdtempSync(join(tmpdir(), "telemetry-drain-budget-"));
  dirs.push(dir);
  const store = SpoolStore.open({
    dir,
    maxBytes: 1_073_741_824,
    maxAgeMs: 86_400_000,
    full: "block",
    log: silentLogger(),
    onDrop: () => undefined,
  });
  const batch: OutgoingBatch = [
    { route: "readings", datum: Buffer.alloc(bytes, 7), messageId: undefined, receivedAt: 1 },
  ];
  await Promise.all(
    Array.from({ length: records }, () => new Promise<boolean>((resolve) => store.append(batch, resolve))),
  );
  return store;
}

describe("the spool's drain under the gateway's byte budget", () => {
  it("holds at most half of the budget in records awaiting confirms, and drains everything as confirms come", async () => {
    const store = await spoolOf(60, 100_000);
    const budget = new ByteBudget(MIB);
    const sink = new HoldingSink();
    const input = startSpoolInput(store, sink, { log: silentLogger(), drainTimeoutMs: 0, budget });
    await vi.waitFor(() => expect(sink.held.length).toBeGreaterThan(0));
    // 100 kB records in a 512 KiB share: five of them, and the one a read always brings; not the 4,000-record window.
    expect(sink.held.length).toBeGreaterThanOrEqual(5);
    expect(sink.held.length).toBeLessThanOrEqual(6);
    expect(budget.held).toBeLessThanOrEqual(MIB / 2 + RECORD_HELD);
    while (sink.confirmed < 60) {
      sink.confirmAll();
      await vi.waitFor(() => expect(sink.held.length > 0 || sink.confirmed === 60).toBe(true));
      expect(budget.held).toBeLessThanOrEqual(MIB / 2 + RECORD_HELD);
    }
    await vi.waitFor(() => expect(store.depth().records).toBe(0));
    expect(budget.held).toBe(0);
    await input.stop();
    store.close();
  });

  it("reads nothing more while the budget is full, but always one record, however large", async () => {
    const store = await spoolOf(3, 3 * MIB);
    const budget = new ByteBudget(MIB);
    const elsewhere = budget.hold(2 * MIB); // the MQTT side holding more than the whole budget
    const sink = new HoldingSink();
    const input = startSpoolInput(store, sink, { log: silentLogger(), drainTimeoutMs: 0, budget });
    await vi.waitFor(() => expect(sink.held.length).toBe(1));
    sink.confirmAll();
    await vi.waitFor(() => expect(sink.confirmed + sink.held.length).toBe(2));
    expect(sink.held.length).toBe(1);
    elsewhere();
    sink.confirmAll();
    await vi.waitFor(() => expect(sink.held.length).toBe(1));
    sink.confirmAll();
    await vi.waitFor(() => expect(store.depth().records).toBe(0));
    await input.stop();
    store.close();
  });
});
