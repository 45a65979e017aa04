import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../common/log.js";
import { startSilenceGauge } from "../../processor/silence.js";
import { reading } from "../helpers/query-db.js";
import { STORE_KINDS, type TestStore, testStore } from "../helpers/stores.js";

const SEC = 1_000;

describe.each(STORE_KINDS)("the processor's silent-devices gauge on %s", (kind) => {
  let db: TestStore;
  const now = Date.now();

  beforeAll(async () => {
    db = await testStore(kind, "processor-silence");
    // Two devices every 10 s, one of them quiet for 5 minutes.
    const every = (device: string, last: number) =>
      Array.from({ length: 10 }, (_, i) =>
        reading(device, "t", i, i, { received_at: last - (9 - i) * 10 * SEC }),
      );
    await db.write([...every("live", now - SEC), ...every("quiet", now - 300 * SEC)]);
  });
  afterAll(async () => {
    await db?.dispose();
  });

  it("counts the silent devices in one number, with no label per device", async () => {
    const registry = new Registry();
    const gauge = await startSilenceGauge(
      { ...db.config, silentMin: 60 * SEC },
      registry,
      createLogger("test", "error"),
    );
    try {
      const metric = await registry.getSingleMetric("telemetry_processor_silent_devices")?.get();
      expect(metric?.values).toEqual([{ value: 1, labels: {} }]);
    } finally {
      await gauge.stop();
    }
  });
});
