import amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { declareTopology } from "../../amqp/topology.js";
import { silentLogger } from "../../common/log.js";
import { type RunningProcessor, startProcessor } from "../../processor/processor.js";
import { SchemaRegistry } from "../../schemas/index.js";
import type { ReadingStore, WriteResult } from "../../store/index.js";
import { cleanup, httpGet, type TestNames, testNames } from "../helpers/services.js";

/** A store on a disk that hangs (a dead NFS mount, a stuck controller): commits neither succeed nor fail. */
class HungStore implements ReadingStore {
  calls = 0;
  writeBatch(): Promise<WriteResult> {
    this.calls++;
    return new Promise(() => undefined);
  }
  async close(): Promise<void> {}
}

describe("readiness tells a stalled processor from an idle one", () => {
  let names: TestNames;
  let processor: RunningProcessor | undefined;

  beforeAll(() => {
    names = testNames("stall");
  });

  afterAll(async () => {
    await processor?.stop();
    await cleanup(names);
  });

  it("connected and consuming, but nothing committed while deliveries wait: /readyz reports the stall", async () => {
    const store = new HungStore();
    processor = await startProcessor(
      {
        amqpUrl: names.amqpUrl,
        queue: names.queue,
        queueType: "quorum",
        prefetch: 20,
        batchSize: 10,
        batchDelayMs: 10,
        drainTimeoutMs: 500,
        stallTimeoutMs: 1_500,
        httpHost: "127.0.0.1",
        httpPort: 0,
      },
      store,
      silentLogger(),
    );
    const port = processor.httpPort;
    // Idle for longer than the stall timeout: still ready.
    await new Promise((r) => setTimeout(r, 2_000));
    expect(await httpGet(port, "/readyz")).toEqual({ status: 200, body: "ready\n" });

    const conn = await amqp.connect(names.amqpUrl);
    const ch = await conn.createConfirmChannel();
    await declareTopology(ch, names.queue, "quorum");
    const schemas = SchemaRegistry.load();
    for (let i = 0; i < 50; i++) {
      const r = { device_id: "d", sensor: "s", ts: Date.UTC(2026, 0, 1) + i, value: i, unit: null, seq: i };
      ch.sendToQueue(names.queue, schemas.encode({ ...r, gateway_id: "gw", received_at: r.ts }), {
        persistent: true,
      });
    }
    await ch.waitForConfirms();
    await conn.close();

    await vi.waitFor(() => expect(store.calls).toBeGreaterThan(0), { timeout: 5_000 });
    // Right after the deliveries arrive it is not yet a stall.
    expect((await httpGet(port, "/readyz")).status).toBe(200);
    await vi.waitFor(
      async () => {
        const r = await httpGet(port, "/readyz");
        expect(r.status).toBe(503);
        expect(r.body).toMatch(
          /^not ready: stalled: 20 deliveries held, \d+ ready on the queue, nothing committed for \d+ s/,
        );
      },
      { timeout: 10_000 },
    );
  });
});
