import { writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import { metric, metricTotal } from "../helpers/fault-stream.js";
import { freePort } from "../helpers/private-brokers.js";
import {
  cleanup,
  countRows,
  httpGet,
  runCli,
  type Service,
  startPipeline,
  startService,
  type TestNames,
  testNames,
  untilReady,
} from "../helpers/services.js";

const PASSWORD = "Status-S3cret-p4ss";
const READINGS = 200;
const TS0 = Date.UTC(2026, 3, 1);

interface StatusJson {
  queues: Record<string, { messages?: number; consumers?: number; error?: string }>;
  store: { rows?: number; newest_ts?: string | null; error?: string };
  services: Record<
    string,
    {
      ready: boolean;
      state: string;
      reason?: string;
      rates?: Record<string, number>;
      uplink?: "up" | "down";
      spool?: { readings: number; bytes: number; oldest_age_s: number; full: boolean; dropped: number };
    }
  >;
}

describe("telemetry status", () => {
  let names: TestNames;
  let gateway: Service;
  let processor: Service;
  let publisher: mqtt.MqttClient;
  let flags: string[];

  beforeAll(async () => {
    names = testNames("opsstatus");
    ({ gateway, processor } = await startPipeline(names));
    publisher = await mqtt.connectAsync(names.mqttUrl, { clean: true, reconnectPeriod: 0 });
    flags = [
      "--format",
      "json",
      "--gateway",
      `http://127.0.0.1:${gateway.httpPort}`,
      "--processor",
      `http://127.0.0.1:${processor.httpPort}`,
    ];
  });

  afterAll(async () => {
    await publisher?.endAsync();
    await Promise.all([gateway?.stop(), processor?.stop()]);
    await cleanup(names);
  });

  it("shows each queue's depth and consumers, the rows stored and the newest reading, both services ready, and rates while readings flow", async () => {
    for (let i = 0; i < READINGS; i++) {
      await publisher.publishAsync(
        `${names.topicPrefix}/dev-s/temp`,
        JSON.stringify({ value: i, ts: TS0 + i }),
        {
          qos: 1,
        },
      );
    }
    await publisher.publishAsync(`${names.topicPrefix}/dev-s/temp`, "not json", { qos: 1 });
    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(READINGS), { timeout: 20_000 });

    // Keep readings flowing while status samples the services' counters.
    let flowing = true;
    let i = READINGS;
    const flow = (async () => {
      while (flowing) {
        await publisher.publishAsync(
          `${names.topicPrefix}/dev-s/temp`,
          JSON.stringify({ value: i, ts: TS0 + i }),
          {
            qos: 1,
          },
        );
        i++;
      }
    })();
    const { code, stdout, stderr } = await runCli(["status", ...flags, "--interval", "1s"], names.env);
    flowing = false;
    await flow;
    expect(code, stderr).toBe(0);
    const s = JSON.parse(stdout) as StatusJson;
    const q = queueNames(names.queue);
    expect(Object.keys(s.queues)).toEqual([q.readings, q.rejected, q.dead]);
    expect(s.queues[q.readings]?.consumers).toBeGreaterThanOrEqual(1);
    expect(s.queues[q.rejected]).toEqual({ messages: 1, consumers: 0 });
    expect(s.queues[q.dead]).toEqual({ messages: 0, consumers: 0 });
    expect(s.store.rows).toBeGreaterThanOrEqual(READINGS);
    expect(Date.parse(s.store.newest_ts ?? "")).toBeGreaterThanOrEqual(TS0 + READINGS - 1);
    expect(s.services.gateway).toMatchObject({ ready: true, state: "ready" });
    expect(s.services.processor).toMatchObject({ ready: true, state: "ready" });
    expect(s.services.gateway?.rates?.published_per_s).toBeGreaterThan(0);
    expect(s.services.processor?.rates?.stored_per_s).toBeGreaterThan(0);

    // While readings flow the processor moves its prefetch window by subscribing anew and then cancelling the old
    // consumer, so a sample may see two or three; once the flow stops exactly one stays (a leaked one would not go).
    await vi.waitFor(
      async () => {
        const settled = await runCli(["status", ...flags, "--interval", "100ms"], names.env);
        expect((JSON.parse(settled.stdout) as StatusJson).queues[q.readings]).toMatchObject({ consumers: 1 });
      },
      { timeout: 20_000, interval: 500 },
    );
    const table = await runCli(["status", ...flags.slice(2), "--format", "table"], names.env);
    expect(table.stdout).toMatch(new RegExp(`^${q.rejected.replaceAll(".", "\\.")}\\s+1\\s+0$`, "m"));
    expect(table.stdout).toMatch(/^gateway\s+ready\s/m);
  });

  it("a service that is down and a broker that refuses the password are reported, exit 1, and the password is never shown", async () => {
    const secretFile = join(names.dir, "amqp-url");
    writeFileSync(secretFile, `amqp://guest:${PASSWORD}@127.0.0.1:5672\n`);
    const env = { ...names.env, AMQP_URL: "" };
    const run = await runCli(
      [
        "status",
        "--format",
        "json",
        "--gateway",
        "http://127.0.0.1:9",
        "--processor",
        `http://127.0.0.1:${processor.httpPort}`,
      ],
      {
        ...env,
        AMQP_URL_FILE: secretFile,
      },
    );
    expect(run.code).toBe(1);
    const s = JSON.parse(run.stdout) as StatusJson;
    expect(s.services.gateway).toMatchObject({ ready: false, state: "unreachable" });
    expect(s.services.processor).toMatchObject({ ready: true });
    expect(Object.values(s.queues)[0]?.error).toMatch(
      /^RabbitMQ amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672: .*ACCESS.REFUSED/,
    );
    expect(run.stdout + run.stderr).not.toContain(PASSWORD);

    const table = await runCli(["status", "--format", "table"], { ...env, AMQP_URL_FILE: secretFile });
    expect(table.stdout + table.stderr).not.toContain(PASSWORD);
  });
});

describe("telemetry status with a spooling gateway", () => {
  const SPOOLED = 150;
  let names: TestNames;
  const services: Service[] = [];
  let publisher: mqtt.MqttClient | undefined;

  beforeAll(() => {
    names = testNames("opsstatus-spool");
  });

  afterAll(async () => {
    await publisher?.endAsync();
    await Promise.all(services.map((s) => s.stop("SIGKILL")));
    await cleanup(names);
  });

  const startGateway = async (amqpUrl: string): Promise<Service> => {
    const g = await startService("gateway", {
      ...names.env,
      AMQP_URL: amqpUrl,
      SPOOL_PATH: join(names.dir, "spool"),
      DRAIN_TIMEOUT: "1s",
    });
    services.push(g);
    await untilReady(g);
    return g;
  };

  const status = async (g: Service, format: "json" | "table") =>
    runCli(
      [
        "status",
        "--format",
        format,
        "--gateway",
        `http://127.0.0.1:${g.httpPort}`,
        // No processor in this test: it shows as unreachable (exit 1), which is not what is checked here.
        "--processor",
        "http://127.0.0.1:9",
        "--interval",
        "200ms",
      ],
      names.env,
    );

  it("a gateway whose uplink refuses connections stays ready and shows uplink down with its spool's depth; once its uplink works it shows uplink up and the spool drained", async () => {
    // A port nothing listens on: every connection to RabbitMQ is refused.
    const refused = `amqp://guest:guest@127.0.0.1:${await freePort()}`;
    const down = await startGateway(refused);
    publisher = await mqtt.connectAsync(names.mqttUrl, { clean: true, reconnectPeriod: 0 });
    for (let i = 0; i < SPOOLED; i++) {
      await publisher.publishAsync(
        `${names.topicPrefix}/dev-sp/temp`,
        JSON.stringify({ value: i, ts: TS0 + i }),
        { qos: 1 },
      );
    }
    // The gateway takes them with RabbitMQ unreachable: each is PUBACKed to the broker once durable in the spool.
    await vi.waitFor(
      async () => expect(await metric(down.httpPort, "telemetry_gateway_spool_depth_readings")).toBe(SPOOLED),
      { timeout: 10_000, interval: 100 },
    );
    expect(await metric(down.httpPort, "telemetry_gateway_messages_received_total")).toBe(SPOOLED);
    expect((await httpGet(down.httpPort, "/readyz")).status).toBe(200);

    const json = await status(down, "json");
    const s = JSON.parse(json.stdout) as StatusJson;
    expect(Object.keys(s)).toEqual(expect.arrayContaining(["queues", "store", "services"]));
    expect(s.services.gateway).toMatchObject({
      ready: true,
      state: "ready",
      uplink: "down",
      spool: { readings: SPOOLED, full: false, dropped: 0 },
    });
    expect(s.services.gateway?.spool?.bytes).toBeGreaterThan(0);
    expect(s.services.processor).toMatchObject({ ready: false, state: "unreachable" });
    const table = await status(down, "table");
    expect(table.stdout).toMatch(/^gateway\s+ready\s/m);
    expect(table.stdout).toMatch(
      new RegExp(`^\\s+uplink down: the spool absorbs the outage, ${SPOOLED} readings spooled`, "m"),
    );

    // The same spool under a gateway whose uplink works: it drains into RabbitMQ.
    expect(await down.stop("SIGTERM")).toBe(0);
    const up = await startGateway(names.amqpUrl);
    await vi.waitFor(
      async () => {
        expect(await metric(up.httpPort, "telemetry_gateway_spool_depth_readings")).toBe(0);
        expect(await metricTotal(up.httpPort, "telemetry_gateway_spool_drained_total")).toBe(SPOOLED);
      },
      { timeout: 20_000, interval: 100 },
    );
    const after = JSON.parse((await status(up, "json")).stdout) as StatusJson;
    expect(after.services.gateway).toMatchObject({
      ready: true,
      uplink: "up",
      spool: { readings: 0, full: false, dropped: 0 },
    });
    expect(after.queues[queueNames(names.queue).readings]?.messages).toBeGreaterThan(0);
    const upTable = await status(up, "table");
    expect(upTable.stdout).toMatch(/^\s+uplink up; spool: 0 readings spooled/m);
    expect(upTable.stdout).not.toMatch(/uplink down/);
  });
});
