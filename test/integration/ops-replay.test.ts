import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import amqp from "amqplib";
import avro from "avsc";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import { canonicalForm, crc64Avro } from "../../schemas/index.js";
import { CLI } from "../../scripts/spawn.js";
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
} from "../helpers/services.js";

const SCHEMA_DIR = new URL("../../schemas/", import.meta.url);
const AVRO_CONTENT_TYPE = "application/vnd.apache.avro+binary";
const TS0 = Date.UTC(2026, 2, 1);
/** Messages on `.dead` for the replay that is killed mid-way: enough that it is still running when killed. */
const MANY = 400;

type Schema = { fields: { name: string; type: unknown; default?: unknown; doc?: string }[] };
const v2 = JSON.parse(readFileSync(new URL("reading.v2.avsc", SCHEMA_DIR), "utf8")) as Schema;
/** A newer gateway's schema: version 2 plus a battery level, compatible (it has a default). */
const v3: Schema = {
  ...v2,
  fields: [
    ...v2.fields,
    { name: "battery", type: ["null", "double"], default: null, doc: "Battery, 0 to 1." },
  ],
};
const v3Fingerprint = crc64Avro(canonicalForm(v3));
const v3Type = avro.Type.forSchema(v3 as avro.Schema);

function v3Body(device: string, i: number): Buffer {
  const datum = {
    device_id: device,
    sensor: "pressure",
    ts: TS0 + i,
    value: 1_000 + i,
    unit: "hPa",
    seq: i,
    gateway_id: "gateway-v3",
    received_at: TS0 + i + 5,
    quality: "good",
    tags: {},
    battery: 0.5,
  };
  return Buffer.concat([Buffer.from([0xc3, 0x01]), v3Fingerprint, v3Type.toBuffer(datum)]);
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

describe("telemetry replay", () => {
  let names: TestNames;
  let processor: Service | undefined;
  let conn: amqp.ChannelModel;
  let ch: amqp.ConfirmChannel;
  let upgraded: string;

  const depth = async (q: string) => (await ch.checkQueue(q)).messageCount;
  const json = <T>(stdout: string) => JSON.parse(stdout) as T;

  beforeAll(async () => {
    names = testNames("opsreplay");
    processor = await startService("processor", names.env);
    conn = await amqp.connect(names.amqpUrl);
    ch = await conn.createConfirmChannel();
    upgraded = join(names.dir, "schemas-v3");
    mkdirSync(upgraded);
    for (const f of ["reading.v1.avsc", "reading.v2.avsc"])
      copyFileSync(new URL(f, SCHEMA_DIR), join(upgraded, f));
    writeFileSync(join(upgraded, "reading.v3.avsc"), JSON.stringify(v3, null, 2));
  });

  afterAll(async () => {
    await conn?.close();
    await processor?.stop();
    await cleanup(names);
  });

  /** Publishes version 3 messages to <QUEUE>, which the processor (not knowing version 3) dead-letters. */
  async function deadLetter(device: string, count: number): Promise<void> {
    const { dead } = queueNames(names.queue);
    const before = await depth(dead);
    for (let i = 0; i < count; i++) {
      ch.sendToQueue(names.queue, v3Body(device, i), {
        persistent: true,
        contentType: AVRO_CONTENT_TYPE,
        messageId: `${device}-${i}`,
      });
    }
    await ch.waitForConfirms();
    await vi.waitFor(async () => expect(await depth(dead)).toBe(before + count), { timeout: 20_000 });
  }

  it("a dead-lettered message of a schema the processor did not know is listed with its reason, then stored once after the processor learns the schema", async () => {
    const { dead } = queueNames(names.queue);
    await deadLetter("dev-one", 1);

    const listed = await runCli(["replay", "--from", "dead", "--dry-run", "--format", "json"], names.env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(json<Record<string, unknown>[]>(listed.stdout)).toEqual([
      expect.objectContaining({
        reason: `unknown schema ${v3Fingerprint.toString("hex")}`,
        kind: "unknown-schema",
        message_id: "dev-one-0",
        replay_count: 0,
      }),
    ]);
    await vi.waitFor(async () => expect(await depth(dead)).toBe(1)); // the dry run changed nothing

    await processor?.stop();
    processor = await startService("processor", { ...names.env, SCHEMAS_DIR: upgraded });
    const run = await runCli(["replay", "--from", "dead", "--format", "json"], names.env);
    expect(run.code, run.stderr).toBe(0);
    expect(json<Record<string, unknown>>(run.stdout)).toMatchObject({ replayed: 1, skipped: [] });

    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(1), { timeout: 10_000 });
    expect(readRows(names.dbPath)[0]).toMatchObject({ device_id: "dev-one", ts: TS0, value: 1_000 });
    expect(await depth(dead)).toBe(0);
    const metrics = (await httpGet(processor.httpPort, "/metrics")).body;
    expect(metric(metrics, "telemetry_processor_readings_stored_total")).toBe(1);
    expect(metric(metrics, "telemetry_processor_duplicates_total")).toBe(0);
  });

  it("a replay killed mid-way and run again loses nothing and doubles at most the message it held", async () => {
    const { dead } = queueNames(names.queue);
    // Dead-letter with a processor that does not know version 3, then give it the schema.
    await processor?.stop();
    processor = await startService("processor", names.env);
    await deadLetter("dev-many", MANY);
    await processor.stop();
    processor = await startService("processor", { ...names.env, SCHEMAS_DIR: upgraded });
    const storedBefore = countRows(names.dbPath);

    const replay = spawn(process.execPath, [CLI, "replay", "--from", "dead", "--format", "json"], {
      env: { ...process.env, ...names.env },
      stdio: "ignore",
    });
    const exited = new Promise((resolve) => replay.once("exit", resolve));
    // Kill it once it has moved some messages and while many are still on .dead.
    await vi.waitFor(async () => expect(await depth(dead)).toBeLessThan(MANY - 20), {
      timeout: 20_000,
      interval: 5,
    });
    replay.kill("SIGKILL");
    await exited;
    const leftAfterKill = await depth(dead);
    expect(leftAfterKill).toBeGreaterThan(0); // killed mid-way, not after the end

    const again = await runCli(["replay", "--from", "dead", "--format", "json"], names.env);
    expect(again.code, again.stderr).toBe(0);
    expect(json<{ replayed: number }>(again.stdout).replayed).toBeGreaterThanOrEqual(leftAfterKill);

    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(storedBefore + MANY), { timeout: 20_000 });
    await vi.waitFor(async () => expect(await depth(names.queue)).toBe(0));
    expect(await depth(dead)).toBe(0);
    const metrics = (await httpGet(processor.httpPort, "/metrics")).body;
    expect(metric(metrics, "telemetry_processor_readings_stored_total")).toBe(MANY);
    // At most the one message in hand when killed (re-published, not yet acked on .dead) is sent twice.
    expect(metric(metrics, "telemetry_processor_duplicates_total")).toBeLessThanOrEqual(1);
    const devices = readRows(names.dbPath).filter((r) => r.device_id === "dev-many");
    expect(new Set(devices.map((r) => r.ts)).size).toBe(MANY);
  });

  it("rejected payloads go through the gateway's validation: a now-valid one is stored, an invalid one goes back with its reason and replay count, and is left alone past --max-replays", async () => {
    const { rejected } = queueNames(names.queue);
    const receivedAt = Date.now();
    const headers = (reason: string) => ({
      topic: `${names.topicPrefix}/dev-rej/temperature`,
      reason,
      gateway_id: "edge-old",
      received_at: receivedAt,
    });
    // Refused by an older gateway's rule; valid now.
    ch.sendToQueue(rejected, Buffer.from(JSON.stringify({ value: 21.5, ts: TS0, unit: "C" })), {
      persistent: true,
      headers: headers("an older rule"),
    });
    ch.sendToQueue(rejected, Buffer.from('{"value":"hot"}'), {
      persistent: true,
      headers: headers("value must be a finite number"),
    });
    await ch.waitForConfirms();
    const storedBefore = countRows(names.dbPath);

    const listed = await runCli(["replay", "--from", "rejected", "--dry-run", "--format", "json"], names.env);
    expect(json<{ reason: string }[]>(listed.stdout).map((m) => m.reason)).toEqual([
      "an older rule",
      "value must be a finite number",
    ]);

    const run = await runCli(["replay", "--from", "rejected", "--format", "json"], names.env);
    expect(run.code, run.stderr).toBe(0);
    expect(json<Record<string, unknown>>(run.stdout)).toMatchObject({
      replayed: 1,
      readings: 1,
      still_invalid: 1,
    });
    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(storedBefore + 1), { timeout: 10_000 });
    expect(readRows(names.dbPath).find((r) => r.device_id === "dev-rej")).toMatchObject({
      sensor: "temperature",
      ts: TS0,
      value: 21.5,
      gateway_id: "edge-old",
      received_at: receivedAt,
    });

    const back = await ch.get(rejected, { noAck: false });
    expect(back).not.toBe(false);
    const m = back as amqp.GetMessage;
    expect(m.content.toString()).toBe('{"value":"hot"}');
    expect(m.properties.headers).toMatchObject({
      reason: "value must be a finite number",
      topic: `${names.topicPrefix}/dev-rej/temperature`,
      "x-replay-count": 1,
    });
    ch.nack(m, false, true);

    const capped = await runCli(
      ["replay", "--from", "rejected", "--max-replays", "1", "--format", "json"],
      names.env,
    );
    expect(capped.code, capped.stderr).toBe(0);
    expect(json<Record<string, unknown>>(capped.stdout)).toMatchObject({
      replayed: 0,
      still_invalid: 0,
      skipped: [expect.objectContaining({ reason: "value must be a finite number", replay_count: 1 })],
    });
    await vi.waitFor(async () => expect(await depth(rejected)).toBe(1));
  });

  it("a message whose re-publish is returned (no <QUEUE> to route to) stays on its source", async () => {
    const queue = `${names.queue}-orphan`;
    const { dead } = queueNames(queue);
    await ch.assertQueue(dead, { durable: true });
    try {
      ch.sendToQueue(dead, Buffer.from("x"), { persistent: true, headers: { "x-failure-reason": "test" } });
      await ch.waitForConfirms();
      const run = await runCli(["replay", "--from", "dead", "--queue", queue], names.env);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/returned by RabbitMQ.*NO_ROUTE.*still on/);
      await vi.waitFor(async () => expect(await depth(dead)).toBe(1));
    } finally {
      await ch.deleteQueue(dead);
    }
  });
});
