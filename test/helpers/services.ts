import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import amqp from "amqplib";
import { inject } from "vitest";
import { queueNames } from "../../amqp/topology.js";

import { CLI, type Service, startService, untilReady } from "../../scripts/spawn.js";
import type { StoredRow } from "../../store/inspect.js";
import { endMqttSession } from "./mqtt-session.js";

export { runCli, type Service, startService, untilReady } from "../../scripts/spawn.js";

if (!existsSync(CLI))
  throw new Error("dist/ is missing: run `npm run build` (npm test does it) before the tests");

/** Names of one test's own: queue, topic prefix, gateway id, database file, all unique. */
export interface TestNames {
  readonly id: string;
  readonly queue: string;
  readonly topicPrefix: string;
  readonly gatewayId: string;
  readonly dir: string;
  readonly dbPath: string;
  readonly amqpUrl: string;
  readonly mqttUrl: string;
  /** Environment for the services under test. */
  readonly env: Record<string, string>;
}

export function testNames(label: string): TestNames {
  const id = `${label}-${randomBytes(4).toString("hex")}`;
  const dir = mkdtempSync(join(tmpdir(), `telemetry-${label}-`));
  const amqpUrl = inject("amqpUrl");
  const mqttUrl = inject("mqttUrl");
  const names = {
    id,
    queue: `test.${id}`,
    topicPrefix: `test-${id}`,
    gatewayId: `test-${id}`,
    dir,
    dbPath: join(dir, "telemetry.db"),
    amqpUrl,
    mqttUrl,
  };
  return {
    ...names,
    env: {
      AMQP_URL: amqpUrl,
      MQTT_URL: mqttUrl,
      QUEUE: names.queue,
      TOPIC_PREFIX: names.topicPrefix,
      GATEWAY_ID: names.gatewayId,
      DB_PATH: names.dbPath,
      HTTP_PORT: "0",
      LOG_LEVEL: "info",
    },
  };
}

/**
 * Starts `telemetry gateway` and `telemetry processor` on `names` and resolves once both answer 200 on /readyz. If
 * either fails to start or to get ready, both are SIGKILLed before the error is passed on.
 */
export async function startPipeline(names: TestNames): Promise<{ gateway: Service; processor: Service }> {
  const started = await Promise.allSettled([
    startService("gateway", names.env),
    startService("processor", names.env),
  ]);
  try {
    const [gateway, processor] = started.map((s) => {
      if (s.status === "rejected") throw s.reason;
      return s.value;
    }) as [Service, Service];
    await untilReady(gateway, processor);
    return { gateway, processor };
  } catch (err) {
    await Promise.all(started.map((s) => (s.status === "fulfilled" ? s.value.stop("SIGKILL") : undefined)));
    throw err;
  }
}

export async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/**
 * Rows as tests read them: every column of `readings`. Reading goes through store/inspect.ts, which owns the SQL
 * (`countRows` returns 0 while the database does not exist yet; `readRows` orders by device_id, sensor, ts).
 */
export type Row = StoredRow;
export { countRows, inspectStore, readRows } from "../../store/inspect.js";

/**
 * How long a service took to settle after a signal, by its own clock: from its "stopping: settling in-flight work"
 * line to its "<command> stopped" line (pino times). It leaves out what a loaded machine adds around the service
 * (signal delivery, process exit, the test's own event loop); undefined when either line is missing.
 */
export function settleMs(service: Service, command: "gateway" | "processor"): number | undefined {
  const at = (msg: string) => {
    const line = service.logs.find((l) => l.msg === msg);
    return typeof line?.time === "string" ? Date.parse(line.time) : undefined;
  };
  const from = at("stopping: settling in-flight work");
  const to = at(`${command} stopped`);
  return from === undefined || to === undefined ? undefined : to - from;
}

/** Deletes the test's queues, its gateway's MQTT session and its files. */
export async function cleanup(names: TestNames): Promise<void> {
  const conn = await amqp.connect(names.amqpUrl);
  const ch = await conn.createChannel();
  for (const q of Object.values(queueNames(names.queue))) await ch.deleteQueue(q);
  await conn.close();
  await endMqttSession(names.mqttUrl, `telemetry-gateway-${names.gatewayId}`);
  rmSync(names.dir, { recursive: true, force: true });
}
