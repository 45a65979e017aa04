import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  expectStoredExactlyOnce,
  faultNames,
  metric,
  report,
  startStream,
  until,
} from "../helpers/fault-stream.js";
import { type PrivateMosquitto, startPrivateMosquitto } from "../helpers/private-brokers.js";
import { cleanup, countRows, type Service, startService, type TestNames } from "../helpers/services.js";

const READINGS = 6_000;
const RATE = 1_500;
/** Large, slow batches, so that a batch is open (delivered, not committed, not acked) when the kill lands. */
const PROCESSOR_ENV = { BATCH_SIZE: "2000", BATCH_DELAY: "2s", PREFETCH: "4000" };

describe("fault: kill -9 of the processor in the middle of a batch", () => {
  let mosquitto: PrivateMosquitto;
  let names: TestNames;
  let gateway: Service | undefined;
  let processor: Service | undefined;

  beforeAll(async () => {
    mosquitto = await startPrivateMosquitto();
    names = faultNames("fault-proc-kill", { mqttUrl: mosquitto.url });
  });

  afterAll(async () => {
    await Promise.all([gateway?.stop("SIGKILL"), processor?.stop("SIGKILL")]);
    await cleanup(names);
    await mosquitto.stop();
  });

  it("a reading is stored once after the processor is killed mid-batch and restarted on the same database and queue", async () => {
    const env = { ...names.env, ...PROCESSOR_ENV };
    [gateway, processor] = await Promise.all([startService("gateway", env), startService("processor", env)]);
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 101 });

    // Mid-stream and mid-batch: one batch already committed, the next one holding deliveries it has not acked.
    const first = processor;
    let heldAtKill = 0;
    await until("a batch is committed and the next one is open", 20_000, async () => {
      const stored = await metric(first.httpPort, "telemetry_processor_readings_stored_total");
      heldAtKill = await metric(first.httpPort, "telemetry_processor_inflight_deliveries");
      return stored > 0 && heldAtKill >= 300;
    });
    const rowsAtKill = countRows(names.dbPath);
    expect(await first.stop("SIGKILL")).toBeNull();
    expect(first.proc.signalCode).toBe("SIGKILL");
    expect(stream.acked(), "the kill must land mid-stream").toBeLessThan(READINGS);

    // Readings keep arriving on the queue while no processor runs.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    processor = await startService("processor", env);
    const counts = await expectStoredExactlyOnce(names, stream);
    const duplicates = await metric(processor.httpPort, "telemetry_processor_duplicates_total");
    report("processor kill -9 mid-batch", { ...counts, duplicates, rowsAtKill, heldAtKill });
  });
});
