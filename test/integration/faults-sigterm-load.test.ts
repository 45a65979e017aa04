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
import { countRows, settleMs } from "../helpers/services.js";

const READINGS = 12_000;
/** More than the pipeline takes on these machines, so work is in flight everywhere and a backlog waits in the MQTT broker. */
const RATE = 4_000;
const DRAIN_TIMEOUT_MS = 10_000;
/**
 * The drain timeout plus closing two connections, as the service's own log times measure it (from "stopping" to
 * "stopped"): signal delivery, process exit and this test's event loop, which a loaded machine stretches, are not
 * in it.
 */
const SETTLE_BOUND_MS = DRAIN_TIMEOUT_MS + 3_000;

describe("fault: SIGTERM to both services under full load", () => {
  const brokers = privateBrokersPerFile({ mosquitto: { maxQueued: 0 } });

  it("both exit 0 within the drain timeout, and after a restart nothing is lost or stored twice", async () => {
    await using run = await brokers().pipeline("fault-sigterm");
    const { names } = run;
    const env = { DRAIN_TIMEOUT: `${DRAIN_TIMEOUT_MS}ms` };
    const { gateway: gw, processor: proc } = await run.start(env);
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 707 });
    let inflightAtStop = 0;
    let heldAtStop = 0;
    await until("a quarter of the stream is stored and work is in flight", 20_000, async () => {
      const stored = await metric(proc.httpPort, "telemetry_processor_readings_stored_total");
      inflightAtStop = await metric(gw.httpPort, "telemetry_gateway_inflight_messages");
      heldAtStop = await metric(proc.httpPort, "telemetry_processor_inflight_deliveries");
      return stored >= READINGS / 4 && inflightAtStop > 0;
    });
    const storedBeforeStop = await metric(proc.httpPort, "telemetry_processor_readings_stored_total");
    const duplicatesBeforeStop = await metric(proc.httpPort, "telemetry_processor_duplicates_total");

    const started = Date.now();
    const exits = await Promise.all(
      [gw, proc].map(async (s) => ({ code: await s.stop("SIGTERM"), ms: Date.now() - started })),
    );
    const [gwExit, procExit] = exits as [
      { code: number | null; ms: number },
      { code: number | null; ms: number },
    ];
    expect({ gateway: gwExit.code, processor: procExit.code }).toEqual({ gateway: 0, processor: 0 });
    expect(gw.logs.some((l) => l.msg === "gateway stopped")).toBe(true);
    expect(proc.logs.some((l) => l.msg === "processor stopped")).toBe(true);
    const settled = { gateway: settleMs(gw, "gateway"), processor: settleMs(proc, "processor") };
    expect(settled.gateway, "the gateway logged stopping and stopped").toBeDefined();
    expect(settled.processor, "the processor logged stopping and stopped").toBeDefined();
    expect(
      Math.max(settled.gateway ?? Number.POSITIVE_INFINITY, settled.processor ?? Number.POSITIVE_INFINITY),
    ).toBeLessThan(SETTLE_BOUND_MS);
    const ackedAtStop = stream.acked();
    expect(storedBeforeStop, "the services must stop mid-stream").toBeLessThan(READINGS);
    const rowsAfterStop = countRows(names.dbPath);

    const [, processor] = await Promise.all([run.gateway(env), run.processor(env)]);
    const counts = await expectStoredExactlyOnce(names, stream);
    const { duplicates: duplicatesAfterRestart } = await expectDeliveriesAccounted(
      processor,
      counts.stored - rowsAfterStop,
    );
    report("SIGTERM under full load", {
      ...counts,
      duplicates: duplicatesBeforeStop + duplicatesAfterRestart,
      duplicatesAfterRestart,
      storedBeforeStop,
      gatewayInflightAtStop: inflightAtStop,
      processorHeldAtStop: heldAtStop,
      gatewayExitMs: gwExit.ms,
      processorExitMs: procExit.ms,
      gatewaySettleMs: settled.gateway,
      processorSettleMs: settled.processor,
      ackedAtStop,
    });
    // A graceful stop settles everything it took: the gateway PUBACKs what RabbitMQ confirmed and the processor
    // acks what it committed, so nothing comes round a second time (a kill -9 may redeliver; a SIGTERM must not).
    expect(duplicatesBeforeStop + duplicatesAfterRestart).toBe(0);
  });
});
