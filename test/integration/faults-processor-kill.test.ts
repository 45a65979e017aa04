import { describe, expect, it } from "vitest";
import {
  expectDeliveriesAccounted,
  expectStoredExactlyOnce,
  metric,
  report,
  startStream,
  until,
} from "../helpers/fault-stream.js";
import { privateBrokersPerFile } from "../helpers/private-pipeline.js";
import { countRows } from "../helpers/services.js";

const READINGS = 6_000;
const RATE = 1_500;
/** Large, slow batches, so that a batch is open (delivered, not committed, not acked) when the kill lands. */
const PROCESSOR_ENV = { BATCH_SIZE: "2000", BATCH_DELAY: "2s", PREFETCH: "4000" };

describe("fault: kill -9 of the processor in the middle of a batch", () => {
  const brokers = privateBrokersPerFile();

  it("a reading is stored once after the processor is killed mid-batch and restarted on the same database and queue", async () => {
    await using run = await brokers().pipeline("fault-proc-kill");
    const { names } = run;
    const { gateway: gw, processor: first } = await run.start(PROCESSOR_ENV);
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 101 });

    // Mid-stream and mid-batch: one batch already committed, the next one holding deliveries it has not acked.
    let heldAtKill = 0;
    await until("a batch is committed and the next one is open", 20_000, async () => {
      const stored = await metric(first.httpPort, "telemetry_processor_readings_stored_total");
      heldAtKill = await metric(first.httpPort, "telemetry_processor_inflight_readings");
      // Natural batching commits as soon as the store is free, so a transaction is open only while one commits: any
      // reading delivered and not yet committed at the kill is what this test is about.
      return stored > 0 && heldAtKill > 0;
    });
    expect(await first.stop("SIGKILL")).toBeNull();
    expect(first.proc.signalCode).toBe("SIGKILL");
    expect(stream.acked(), "the kill must land mid-stream").toBeLessThan(READINGS);
    // Counted after the kill: a commit may land between the last look at the metrics and the signal.
    const rowsAtKill = countRows(names.dbPath);

    // Readings keep arriving on the queue while no processor runs.
    const publishedAtKill = await metric(gw.httpPort, "telemetry_gateway_readings_published_total");
    await until("the gateway has queued more readings while no processor runs", 20_000, async () => {
      return (
        (await metric(gw.httpPort, "telemetry_gateway_readings_published_total")) >= publishedAtKill + 300
      );
    });
    const processor = await run.processor(PROCESSOR_ENV);
    const counts = await expectStoredExactlyOnce(names, stream);
    // The restarted processor took what the first one held (redelivered) and what queued up meanwhile: every one
    // of those deliveries is a new row or, when its batch had committed before the kill, a counted duplicate.
    const second = await expectDeliveriesAccounted(processor, counts.stored - rowsAtKill);
    report("processor kill -9 mid-batch", {
      ...counts,
      duplicates: second.duplicates,
      redeliveredOrNew: second.deliveries,
      rowsAtKill,
      heldAtKill,
    });
  });
});
