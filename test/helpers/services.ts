import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import amqp from "amqplib";
import mqtt from "mqtt";
import Database from "better-sqlite3";
import { inject } from "vitest";
import { queueNames } from "../../common/amqp.js";

export const CLI = fileURLToPath(new URL("../../dist/cli/telemetry.js", import.meta.url));

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

/** A service under test, running as its own process exactly as deployed. */
export interface Service {
  readonly proc: ChildProcess;
  readonly httpPort: number;
  /** Every JSON log line so far. */
  readonly logs: Record<string, unknown>[];
  readonly stderr: () => string;
  /** Sends the signal and resolves with the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

/** Starts `telemetry <command>` and resolves once it logged that it started (with its HTTP port). */
export async function startService(
  command: "gateway" | "processor",
  env: Record<string, string>,
  args: string[] = [],
): Promise<Service> {
  const proc = spawn(process.execPath, [CLI, command, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = "";
  let buffered = "";
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const started = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not start in 30 s:\n${stderr}`)), 30_000);
    proc.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl = buffered.indexOf("\n");
      while (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf("\n");
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry.msg === `${command} started`) {
            clearTimeout(timer);
            resolve(entry.httpPort as number);
          }
        } catch {
          stderr += `${line}\n`;
        }
      }
    });
    proc.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited with ${code} before it started:\n${stderr}`));
    });
  });
  const httpPort = await started;
  return {
    proc,
    httpPort,
    logs,
    stderr: () => stderr,
    exited,
    stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Runs `telemetry <args>` to completion and returns its exit code and output. */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    proc.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    proc.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

export async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** Number of rows in `readings`, or 0 while the database does not exist yet. */
export function countRows(dbPath: string): number {
  try {
    const db = new Database(dbPath, { readonly: true, fileMustExist: true });
    try {
      return (db.prepare("SELECT count(*) AS n FROM readings").get() as { n: number }).n;
    } finally {
      db.close();
    }
  } catch {
    return 0;
  }
}

export interface Row {
  device_id: string;
  sensor: string;
  ts: number;
  value: number;
  unit: string | null;
  seq: number | null;
  gateway_id: string;
  received_at: number;
}

export function readRows(dbPath: string): Row[] {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare("SELECT * FROM readings ORDER BY device_id, sensor, ts").all() as Row[];
  } finally {
    db.close();
  }
}

/** Deletes the test's queues, its gateway's MQTT session and its files. */
export async function cleanup(names: TestNames): Promise<void> {
  const conn = await amqp.connect(names.amqpUrl);
  const ch = await conn.createChannel();
  for (const q of Object.values(queueNames(names.queue))) await ch.deleteQueue(q);
  await conn.close();
  const client = await mqtt.connectAsync(names.mqttUrl, {
    clientId: `telemetry-gateway-${names.gatewayId}`,
    clean: true,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 0 },
    reconnectPeriod: 0,
  });
  await client.endAsync();
  rmSync(names.dir, { recursive: true, force: true });
}
