/**
 * A full spool in a real gateway process, the uplink down: under SPOOL_FULL=block the gateway stops PUBACKing and
 * says so on /readyz (the MQTT broker keeps the readings), and when the uplink is back every reading is stored
 * exactly once; under drop-newest and drop-oldest it stays ready, takes everything, and counts and logs each drop.
 */
import { join } from "node:path";
import mqtt from "mqtt";
import { describe, expect, it } from "vitest";
import { expectStoredExactlyOnce, metric, report, startStream, until } from "../helpers/fault-stream.js";
import { freePort } from "../helpers/private-brokers.js";
import { type PrivatePipeline, privateBrokersPerFile } from "../helpers/private-pipeline.js";
import { countRows, httpGet, type Service, untilReady } from "../helpers/services.js";

/** The smallest spool allowed: about 7,000 readings of the simulator's. */
const SPOOL_MAX_BYTES = 1_048_576;
const INFLIGHT = 500;
const BLOCK_READINGS = 12_000;
const DROP_READINGS = 12_000;
const RATE = 3_000;
const QUIET_MS = 2_000;
const STORED_TIMEOUT_MS = 90_000;
/** The payload: 7,000 readings under 120-character ids, about 223 KB, a record of about 2.9 MB. */
const BIG_READINGS = 7_000;
const BIG_ID_LENGTH = 120;

/** One labelled series of a counter (0 when absent). */
async function series(port: number, name: string, label: string): Promise<number> {
  const { body } = await httpGet(port, "/metrics");
  const line = body.split("\n").find((l) => l.startsWith(`${name}{${label}} `));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

describe("spool full, uplink down", () => {
  // max_queued_messages 0: what the gateway does not take stays queued in its session.
  const mosquittoOnly = { mosquitto: { maxQueued: 0 } };
  const brokers = privateBrokersPerFile(mosquittoOnly);

  /** Starts a gateway on `run` whose spool is full by `full`'s rule, with `env` on top; resolves once it is ready. */
  const gateway = async (
    run: PrivatePipeline,
    full: string,
    env: Record<string, string> = {},
  ): Promise<Service> => {
    const g = await run.gateway({
      SPOOL_PATH: join(run.names.dir, "spool"),
      SPOOL_MAX_BYTES: String(SPOOL_MAX_BYTES),
      SPOOL_FULL: full,
      GATEWAY_INFLIGHT: String(INFLIGHT),
      DRAIN_TIMEOUT: "1s",
      ...env,
    });
    await untilReady(g);
    return g;
  };

  describe("SPOOL_FULL=block", () => {
    const withRabbit = privateBrokersPerFile({ ...mosquittoOnly, rabbit: true });

    it("a full spool makes /readyz 503 naming the spool and stops PUBACKs (the broker keeps the readings); with the uplink back every reading is stored exactly once", async () => {
      await using run = await withRabbit().pipeline("spool-full-block");
      const { names } = run;
      const { rabbit } = withRabbit();
      // The uplink goes away: RabbitMQ closes its listener, connections are refused.
      await rabbit.stopApp();
      const g = await gateway(run, "block");
      const stream = startStream(names, { count: BLOCK_READINGS, rate: RATE, seed: 1_603 });

      await until("the gateway reports the spool full on /readyz", 60_000, async () => {
        return (await httpGet(g.httpPort, "/readyz")).status === 503;
      });
      const readyz = await httpGet(g.httpPort, "/readyz");
      expect(readyz.status).toBe(503);
      expect(readyz.body).toMatch(
        /spool full \(SPOOL_MAX_BYTES 1048576, SPOOL_FULL=block\): holding PUBACKs/,
      );
      expect(await metric(g.httpPort, "telemetry_gateway_spool_full")).toBe(1);
      expect(await metric(g.httpPort, "telemetry_gateway_uplink_up")).toBe(0);
      expect(g.logs.some((l) => String(l.msg).startsWith("spool full (SPOOL_FULL=block)"))).toBe(true);

      // The broker acknowledged the whole stream to the simulator: it holds what the gateway did not take.
      const sent = await stream.done;
      expect(sent.acked).toBe(BLOCK_READINGS);
      const received = await metric(g.httpPort, "telemetry_gateway_messages_received_total");
      const depth = await metric(g.httpPort, "telemetry_gateway_spool_depth_readings");
      await new Promise((r) => setTimeout(r, QUIET_MS));
      // PUBACKs stopped: nothing more arrives (the Receive Maximum is used up) and the spool holds what it held.
      expect(await metric(g.httpPort, "telemetry_gateway_messages_received_total")).toBe(received);
      expect(await metric(g.httpPort, "telemetry_gateway_spool_depth_readings")).toBe(depth);
      expect(received).toBeLessThanOrEqual(depth + INFLIGHT);
      expect(received).toBeLessThan(BLOCK_READINGS);
      const bytes = await metric(g.httpPort, "telemetry_gateway_spool_bytes");
      expect(bytes).toBeLessThanOrEqual(SPOOL_MAX_BYTES);

      // The uplink is back: the same gateway drains, takes the rest from the broker, and is ready again.
      await rabbit.startApp();
      await run.processor();
      const counts = await expectStoredExactlyOnce(names, stream, STORED_TIMEOUT_MS);
      await until("the spool is empty and the gateway ready", 30_000, async () => {
        return (
          (await metric(g.httpPort, "telemetry_gateway_spool_depth_readings")) === 0 &&
          (await httpGet(g.httpPort, "/readyz")).status === 200
        );
      });
      expect(await metric(g.httpPort, "telemetry_gateway_spool_full")).toBe(0);
      expect(await metric(g.httpPort, "telemetry_gateway_uplink_up")).toBe(1);
      expect(await metric(g.httpPort, "telemetry_gateway_spool_dropped_total")).toBe(0);
      report("spool: full under block", {
        ...counts,
        receivedWhileFull: received,
        depthWhileFull: depth,
        bytes,
      });
    });
  });

  describe("a record larger than the whole spool", () => {
    const withRabbit = privateBrokersPerFile({ ...mosquittoOnly, rabbit: true });

    it("SPOOL_MAX_BYTES=1MiB, block, uplink down, one valid payload of 7,000 readings with 120-character ids: not PUBACKed and /readyz says why; with the uplink back all 7,000 are stored", async () => {
      await using run = await withRabbit().pipeline("spool-full-huge");
      const { names } = run;
      const { rabbit } = withRabbit();
      await rabbit.stopApp();
      const g = await gateway(run, "block");
      const t0 = Date.now() - BIG_READINGS;
      const payload = JSON.stringify(
        Array.from({ length: BIG_READINGS }, (_, i) => ({ ts: t0 + i, value: i % 100 })),
      );
      expect(payload.length).toBeGreaterThan(200_000);
      expect(payload.length).toBeLessThan(262_144);
      const topic = `${names.topicPrefix}/${"d".repeat(BIG_ID_LENGTH)}/${"s".repeat(BIG_ID_LENGTH)}`;
      const publisher = await mqtt.connectAsync(names.mqttUrl, { clean: true, reconnectPeriod: 0 });
      try {
        await publisher.publishAsync(topic, payload, { qos: 1 });
      } finally {
        await publisher.endAsync();
      }

      await until("/readyz says the record is larger than the spool", 60_000, async () => {
        const r = await httpGet(g.httpPort, "/readyz");
        return r.status === 503 && /larger than the spool/.test(r.body);
      });
      // Not PUBACKed: the reading waits in the gateway, nothing was dropped, nothing is in the spool.
      expect(await metric(g.httpPort, "telemetry_gateway_inflight_messages")).toBe(1);
      expect(await metric(g.httpPort, "telemetry_gateway_spool_dropped_total")).toBe(0);
      expect(await metric(g.httpPort, "telemetry_gateway_spool_depth_readings")).toBe(0);
      expect(
        g.logs.some((l) => String(l.msg).includes("cannot fit SPOOL_MAX_BYTES 1048576 even empty")),
      ).toBe(true);

      await rabbit.startApp();
      await run.processor();
      await until(
        "all 7,000 readings stored",
        STORED_TIMEOUT_MS,
        async () => countRows(names.dbPath) === BIG_READINGS,
      );
      await until("the gateway ready, nothing in flight", 30_000, async () => {
        return (
          (await httpGet(g.httpPort, "/readyz")).status === 200 &&
          (await metric(g.httpPort, "telemetry_gateway_inflight_messages")) === 0
        );
      });
      expect(await metric(g.httpPort, "telemetry_gateway_spool_dropped_total")).toBe(0);
    }, 180_000);
  });

  it.each(["drop-newest", "drop-oldest"] as const)(
    "SPOOL_FULL=%s keeps the gateway ready and taking every reading, with each drop counted in /metrics and logged",
    async (policy) => {
      await using run = await brokers().pipeline(`spool-full-${policy}`);
      const { names } = run;
      const refused = `amqp://guest:guest@127.0.0.1:${await freePort()}`;
      const g = await gateway(run, policy, { AMQP_URL: refused });
      const stream = startStream(names, { count: DROP_READINGS, rate: RATE, seed: 1_604 });
      const notReady: string[] = [];
      await until("the gateway took every reading", 60_000, async () => {
        const r = await httpGet(g.httpPort, "/readyz");
        if (r.status !== 200) notReady.push(r.body);
        return (await metric(g.httpPort, "telemetry_gateway_messages_received_total")) >= DROP_READINGS;
      });
      await stream.done;
      expect(notReady, "/readyz answers while the spool was full").toEqual([]);
      // Every reading taken was PUBACKed (drop-newest acks what it refuses): nothing waits in the gateway.
      await until("no append waits", 10_000, async () => {
        return (await metric(g.httpPort, "telemetry_gateway_inflight_messages")) === 0;
      });
      const dropped = await series(g.httpPort, "telemetry_gateway_spool_dropped_total", `reason="${policy}"`);
      const depth = await metric(g.httpPort, "telemetry_gateway_spool_depth_readings");
      expect(dropped).toBeGreaterThan(0);
      // Every reading is either in the spool or counted as dropped, none unaccounted.
      expect(depth + dropped).toBe(DROP_READINGS);
      expect(await metric(g.httpPort, "telemetry_gateway_spool_bytes")).toBeLessThanOrEqual(SPOOL_MAX_BYTES);
      expect(await metric(g.httpPort, "telemetry_gateway_spool_full")).toBe(0);
      expect((await httpGet(g.httpPort, "/readyz")).status).toBe(200);
      const logged = g.logs
        .filter((l) => l.msg === "spool dropped records" && l.reason === policy)
        .reduce((n, l) => n + Number(l.messages), 0);
      expect(logged).toBe(dropped);
      report(`spool: full under ${policy}`, { received: DROP_READINGS, dropped, depth });
    },
  );
});
