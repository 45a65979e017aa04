import * as require_fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectStoredExactlyOnce, faultNames, metric, report, startStream, until } from "../helpers/fault-stream.js";
import { type PrivateMosquitto, startPrivateMosquitto } from "../helpers/private-brokers.js";
import { cleanup, type Service, startService, type TestNames } from "../helpers/services.js";

const READINGS = 12_000;
/** More than the pipeline takes on these machines, so work is in flight everywhere and a backlog waits in the MQTT broker. */
const RATE = 4_000;
const DRAIN_TIMEOUT_MS = 10_000;
/** The drain timeout plus closing connections and the process exit. */
const EXIT_BOUND_MS = DRAIN_TIMEOUT_MS + 3_000;

describe("fault: SIGTERM to both services under full load", () => {
  let mosquitto: PrivateMosquitto;
  let names: TestNames;
  let gateway: Service | undefined;
  let processor: Service | undefined;

  beforeAll(async () => {
    mosquitto = await startPrivateMosquitto({ maxQueued: 0 });
    names = faultNames("fault-sigterm", { mqttUrl: mosquitto.url });
  });

  afterAll(async () => {
    await Promise.all([gateway?.stop("SIGKILL"), processor?.stop("SIGKILL")]);
    await cleanup(names);
    await mosquitto.stop();
  });

  it("both exit 0 within the drain timeout, and after a restart nothing is lost or stored twice", async () => {
    const env = { ...names.env, DRAIN_TIMEOUT: `${DRAIN_TIMEOUT_MS}ms` };
    [gateway, processor] = await Promise.all([startService("gateway", env), startService("processor", env)]);
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 707 });
    const [gw, proc] = [gateway, processor];
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
    const [gwExit, procExit] = exits as [{ code: number | null; ms: number }, { code: number | null; ms: number }];
    expect({ gateway: gwExit.code, processor: procExit.code }).toEqual({ gateway: 0, processor: 0 });
    expect(Math.max(gwExit.ms, procExit.ms)).toBeLessThan(EXIT_BOUND_MS);
    expect(gw.logs.some((l) => l.msg === "gateway stopped")).toBe(true);
    expect(proc.logs.some((l) => l.msg === "processor stopped")).toBe(true);
    const ackedAtStop = stream.acked();
    for (const [n, s] of [["gw", gw], ["proc", proc]] as const) {
      const i = s.logs.findIndex((l) => l.msg === "stopping: settling in-flight work");
      require_fs.writeFileSync(`/tmp/dbg-${n}.json`, s.logs.slice(Math.max(0, i - 3)).map((l) => JSON.stringify(l)).join("\n"));
    }
    expect(storedBeforeStop, "the services must stop mid-stream").toBeLessThan(READINGS);

    const amqplib = (await import("amqplib")).default;
    const c = await amqplib.connect(names.amqpUrl);
    const chx = await c.createChannel();
    const depth = async () => (await chx.checkQueue(names.queue)).messageCount;
    const { countRows } = await import("../helpers/services.js");
    const R = countRows(names.dbPath);
    const Q = await depth();
    console.log("DIAG after stop: rows", R, "queue", Q, "sum", R + Q);
    {
      const { messageIdOf } = await import("../../gateway/amqp-output.js");
      const { readRows } = await import("../helpers/services.js");
      const ids = new Set(readRows(names.dbPath).map((r) => messageIdOf({ device_id: r.device_id, sensor: r.sensor, ts: r.ts })));
      const ch2 = await c.createChannel();
      let inDb = 0;
      let redelivered = 0;
      let redeliveredInDb = 0;
      for (;;) {
        const m = await ch2.get(names.queue, { noAck: false });
        if (!m) break;
        const hit = ids.has(String(m.properties.messageId));
        if (hit) inDb++;
        if (m.fields.redelivered) redelivered++;
        if (hit && m.fields.redelivered) redeliveredInDb++;
      }
      await ch2.close();
      console.log("DIAG queue msgs already in db", inDb, "redelivered", redelivered, "redelivered&inDb", redeliveredInDb);
    }
    gateway = await startService("gateway", env);
    await new Promise((r) => setTimeout(r, 6000));
    const Q2 = await depth();
    const pub2 = await metric(gateway.httpPort, "telemetry_gateway_readings_published_total");
    console.log("DIAG after gw2: rows", countRows(names.dbPath), "queue", Q2, "sum", R + Q2, "gw2 published", pub2);
    await c.close();
    processor = await startService("processor", env);
    const counts = await expectStoredExactlyOnce(names, stream);
    const duplicatesAfterRestart = await metric(processor.httpPort, "telemetry_processor_duplicates_total");
    require_fs.writeFileSync("/tmp/dbg-gw2.json", gateway.logs.map((l) => JSON.stringify(l)).join("\n")); require_fs.writeFileSync("/tmp/dbg-proc2.json", processor.logs.map((l) => JSON.stringify(l)).join("\n"));
    report("SIGTERM under full load", {
      ...counts,
      duplicates: duplicatesBeforeStop + duplicatesAfterRestart,
      duplicatesAfterRestart,
      storedBeforeStop,
      gatewayInflightAtStop: inflightAtStop,
      processorHeldAtStop: heldAtStop,
      gatewayExitMs: gwExit.ms,
      processorExitMs: procExit.ms,
      ackedAtStop,
    });
  });
});
