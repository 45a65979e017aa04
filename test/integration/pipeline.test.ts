import { readFileSync } from "node:fs";
import { join } from "node:path";
import amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import type { SimReading } from "../../simulators/sensors.js";
import { expectDeliveriesAccounted } from "../helpers/fault-stream.js";
import {
  cleanup,
  countRows,
  httpGet,
  readRows,
  runCli,
  type Service,
  startService,
  type TestNames,
  testNames,
  untilReady,
} from "../helpers/services.js";

const READINGS = 10_000;
/**
 * Far longer than anything an idle service does when it stops, so that a stop which waits out its drain deadline
 * instead of settling at once shows as a bound exceeded, not as a timing that a loaded machine might also reach.
 */
const DRAIN_TIMEOUT_MS = 120_000;
const IDLE_SETTLE_BOUND_MS = DRAIN_TIMEOUT_MS / 2;

describe("the pipeline end to end: simulated sensors -> gateway -> RabbitMQ -> processor -> SQLite", () => {
  let names: TestNames;
  let gateway: Service;
  let processor: Service;

  beforeAll(async () => {
    names = testNames("pipeline");
    const env = { ...names.env, DRAIN_TIMEOUT: `${DRAIN_TIMEOUT_MS}ms` };
    // A gateway window as large as the run: a broker with Mosquitto's default queue limit (1,000 queued per
    // session, then it drops) cannot drop any of it, however slow a loaded machine makes the gateway.
    [processor, gateway] = await Promise.all([
      startService("processor", env),
      startService("gateway", { ...env, GATEWAY_INFLIGHT: String(READINGS) }),
    ]);
    await untilReady(processor, gateway);
  });

  afterAll(async () => {
    await Promise.all([gateway?.stop("SIGKILL"), processor?.stop("SIGKILL")]);
    await cleanup(names);
  });

  it("both services report ready and expose metrics", async () => {
    for (const s of [gateway, processor]) {
      expect(await httpGet(s.httpPort, "/healthz")).toEqual({ status: 200, body: "ok\n" });
      expect(await httpGet(s.httpPort, "/readyz")).toEqual({ status: 200, body: "ready\n" });
    }
    expect((await httpGet(gateway.httpPort, "/metrics")).body).toContain(
      "telemetry_gateway_readings_published_total",
    );
    expect((await httpGet(processor.httpPort, "/metrics")).body).toContain(
      "telemetry_processor_readings_stored_total",
    );
  });

  it(`every one of ${READINGS.toLocaleString("en")} acknowledged readings is stored once, field for field`, async () => {
    const record = join(names.dir, "sent.ndjson");
    const sim = await runCli(
      [
        "simulate",
        "--devices",
        "25",
        "--count",
        String(READINGS),
        "--rate",
        "2000",
        "--record",
        record,
        "--seed",
        "7",
      ],
      { ...names.env, LOG_LEVEL: "warn" },
    );
    expect(sim.code, sim.stderr).toBe(0);
    const sent = readFileSync(record, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as SimReading);
    expect(sent).toHaveLength(READINGS);

    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(READINGS), {
      timeout: 60_000,
      interval: 250,
    });
    const rows = readRows(names.dbPath);
    const key = (d: string, s: string, ts: number) => `${d}\0${s}\0${ts}`;
    const byKey = new Map(rows.map((r) => [key(r.device_id, r.sensor, r.ts), r]));
    expect(byKey.size).toBe(READINGS);
    const differing = sent.filter((s) => {
      const r = byKey.get(key(s.deviceId, s.sensor, s.ts));
      return (
        !r || r.value !== s.value || r.unit !== s.unit || r.seq !== s.seq || r.gateway_id !== names.gatewayId
      );
    });
    expect(differing).toEqual([]);
    // Nothing provokes a redelivery here: each reading came to the processor once and made one row.
    const processed = await expectDeliveriesAccounted(processor, READINGS);
    expect(processed).toMatchObject({ deliveries: READINGS, duplicates: 0 });
  }, 120_000);

  it("the queue is durable and drained afterwards", async () => {
    const conn = await amqp.connect(names.amqpUrl);
    conn.on("error", () => undefined);
    const ch = await conn.createChannel();
    await vi.waitFor(async () => expect((await ch.checkQueue(names.queue)).messageCount).toBe(0), {
      timeout: 10_000,
    });
    expect((await ch.checkQueue(queueNames(names.queue).dead)).messageCount).toBe(0);
    // Re-declaring as non-durable must be refused by RabbitMQ: the queue it has is durable.
    const redeclare = ch.assertQueue(names.queue, { durable: false });
    await expect(redeclare).rejects.toThrow(/PRECONDITION_FAILED.*durable/);
    await conn.close().catch(() => undefined);
  });

  it(
    "SIGTERM makes both services settle and exit 0",
    async () => {
      const started = Date.now();
      const [gw, proc] = await Promise.all([gateway.stop("SIGTERM"), processor.stop("SIGTERM")]);
      expect({ gateway: gw, processor: proc }).toEqual({ gateway: 0, processor: 0 });
      // Idle services have nothing to settle: they stop at once rather than wait out the (long) drain timeout.
      expect(Date.now() - started).toBeLessThan(IDLE_SETTLE_BOUND_MS);
      expect(gateway.logs.some((l) => l.msg === "gateway stopped")).toBe(true);
      expect(processor.logs.some((l) => l.msg === "processor stopped")).toBe(true);
    },
    DRAIN_TIMEOUT_MS + 30_000,
  );
});

describe("configuration errors fail fast", () => {
  it.each([
    [["gateway", "--inflight", "0"], /--inflight="0": must be an integer from 1 to 65535/],
    [["processor", "--amqp-url", "http://x"], /--amqp-url="http:\/\/x": must use amqp:/],
    [["processor", "--prefetch", "10", "--batch-size", "100"], /must be at least --batch-size/],
    [["gateway", "--gateway-id", "has space"], /--gateway-id="has space"/],
    [["nonsense"], /unknown command "nonsense"/],
  ])("telemetry %j exits 2 with one line", async (args, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  });

  it("every command answers --help", async () => {
    for (const c of ["gateway", "processor", "simulate"]) {
      const r = await runCli([c, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: telemetry /);
    }
  });
});
