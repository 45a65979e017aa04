import { execFileSync } from "node:child_process";
import amqp from "amqplib";
import mqtt from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import {
  expectDeliveriesAccounted,
  expectStoredExactlyOnce,
  metric,
  metricTotal,
  readRecorded,
  report,
  startStream,
  until,
} from "../helpers/fault-stream.js";
import { pipelineOn } from "../helpers/private-pipeline.js";
import { countRows, httpGet, readRows, type TestNames, testNames, untilReady } from "../helpers/services.js";

/** How long an operator's queue-length policy stays on in the length-limit scenarios. */
const POLICY_MS = 10_000;
const POLICY_MAX_LENGTH = 200;

/** Deletes `<QUEUE>` as an operator would; resolves with the number of messages it held (deleted with it). */
async function deleteQueue(names: TestNames): Promise<number> {
  const conn = await amqp.connect(names.amqpUrl);
  try {
    const ch = await conn.createChannel();
    return (await ch.deleteQueue(queueNames(names.queue).readings)).messageCount;
  } finally {
    await conn.close();
  }
}

function rabbitmqctl(...args: string[]): void {
  execFileSync("rabbitmqctl", args, { stdio: "ignore" });
}

describe("fault: the queue goes away or fills up under a running gateway (operator mistakes, policies)", () => {
  let policy: string | undefined;

  afterEach(() => {
    if (policy) rabbitmqctl("clear_policy", policy);
    policy = undefined;
  });

  it("readings published after the queue was deleted (no processor running) are all stored once a processor starts", async () => {
    await using run = pipelineOn(testNames("queue-deleted"));
    const { names } = run;
    const gateway = await run.gateway();
    await untilReady(gateway);
    await deleteQueue(names);
    const deletedAt = Date.now();
    const stream = startStream(names, { count: 500, rate: 500, seed: 1801 });
    await stream.done;
    const g = gateway;
    await until("the gateway declares the queues again", 15_000, async () =>
      g.logs.some((l) => l.msg === "queues declared again after returned publishes"),
    );
    const returned = await metricTotal(gateway.httpPort, "telemetry_gateway_publishes_refused_total");
    expect(returned).toBeGreaterThan(0);
    const processor = await run.processor();
    const counts = await expectStoredExactlyOnce(names, stream);
    const { duplicates } = await expectDeliveriesAccounted(processor, counts.stored);
    report("queue deleted, then 500 readings, then a processor", {
      ...counts,
      duplicates,
      returnedPublishes: returned,
      healedAfterMs: Date.now() - deletedAt,
    });
  });

  it("the queue deleted mid-stream with the processor running: every reading acknowledged after the deletion is stored once", {
    timeout: 120_000,
  }, async () => {
    await using run = pipelineOn(testNames("queue-deleted-live"));
    const { names } = run;
    const { gateway, processor } = await run.start();
    const stream = startStream(names, { count: 3_000, rate: 500, seed: 1802 });
    await until("a third of the stream is acknowledged", 20_000, async () => stream.acked() >= 1_000);
    // What the queue held when it was deleted is gone with it, including messages on their way to the consumer
    // (deleteQueue counts only the ready ones): the operator's doing, which no publisher can undo. Every reading
    // acknowledged after the deletion must arrive, in particular whatever RabbitMQ returned while it was missing.
    const destroyed = await deleteQueue(names);
    const ackedAtDeletion = stream.acked();
    const deletedAt = Date.now();
    const summary = await stream.done;
    const sent = readRecorded(stream.recordPath);
    const key = (r: { deviceId: string; sensor: string; ts: number }) => `${r.deviceId}/${r.sensor}/${r.ts}`;
    const storedKeys = () => new Set(readRows(names.dbPath).map((r) => `${r.device_id}/${r.sensor}/${r.ts}`));
    const after = sent.slice(ackedAtDeletion);
    await until("every reading acknowledged after the deletion is stored", 60_000, async () => {
      const stored = storedKeys();
      return after.every((r) => stored.has(key(r)));
    });
    const storedAfterMs = Date.now() - deletedAt;
    const stored = storedKeys();
    const lostBefore = sent.slice(0, ackedAtDeletion).filter((r) => !stored.has(key(r))).length;
    expect(summary.unacked).toBe(0);
    expect(stored.size).toBe(countRows(names.dbPath));
    const { duplicates } = await expectDeliveriesAccounted(processor, stored.size, { reconnected: true });
    report("queue deleted mid-stream, processor running", {
      sent: summary.sent,
      acknowledged: summary.acked,
      stored: stored.size,
      ackedAtDeletion,
      readyMessagesDeleted: destroyed,
      lostWithTheQueue: lostBefore,
      duplicates,
      storedAfterMs,
      returnedPublishes: await metricTotal(gateway.httpPort, "telemetry_gateway_publishes_refused_total"),
    });
  });

  for (const queueType of ["classic", "quorum"] as const) {
    it(`a ${queueType} queue limited by an operator's max-length policy: the gateway holds, says so, and resumes when the limit goes; nothing is dropped`, async () => {
      await using run = pipelineOn(testNames(`queue-full-${queueType}`));
      const { names } = run;
      const env = { QUEUE_TYPE: queueType };
      const gateway = await run.gateway(env);
      await untilReady(gateway);
      policy = `test-max-length-${names.id}`;
      rabbitmqctl(
        "set_policy",
        policy,
        `^${names.queue.replace(/\./g, "\\.")}$`,
        JSON.stringify({ "max-length": POLICY_MAX_LENGTH }),
        "--apply-to",
        "queues",
      );
      const stream = startStream(names, { count: 1_000, rate: 500, seed: 1803 });
      const g = gateway;
      await until("the gateway reports the refusal", 20_000, async () => {
        const r = await httpGet(g.httpPort, "/readyz");
        return r.status === 503 && /refused publishes/.test(r.body);
      });
      const whileFull = (await httpGet(gateway.httpPort, "/readyz")).body;
      const nacked = await metricTotal(gateway.httpPort, "telemetry_gateway_publishes_refused_total");
      const publishedWhileFull = await metric(gateway.httpPort, "telemetry_gateway_readings_published_total");
      // Held back: quorum queues enforce the limit a few messages late, so only "far from all of them" is exact.
      expect(publishedWhileFull).toBeLessThan(1_000);
      await new Promise((r) => setTimeout(r, POLICY_MS));
      rabbitmqctl("clear_policy", policy);
      policy = undefined;
      await until("the gateway is ready again", 30_000, async () => {
        return (await httpGet(g.httpPort, "/readyz")).status === 200;
      });
      const processor = await run.processor(env);
      const counts = await expectStoredExactlyOnce(names, stream);
      const { duplicates } = await expectDeliveriesAccounted(processor, counts.stored);
      report(`${queueType} queue with max-length ${POLICY_MAX_LENGTH} for ${POLICY_MS / 1000} s`, {
        ...counts,
        duplicates,
        nackedPublishes: nacked,
        publishedWhileFull,
        readyzWhileFull: whileFull.trim(),
      });
    });
  }

  it("a conflicting reading (same device, sensor and ts, another value) keeps the first value and goes to .dead as a conflict; a plain resend is a duplicate", async () => {
    await using run = pipelineOn(testNames("conflict"));
    const { names } = run;
    const { processor } = await run.start();
    const client = await mqtt.connectAsync(names.mqttUrl, { clean: true, reconnectPeriod: 0 });
    const topic = `${names.topicPrefix}/dev-1/temperature`;
    const ts = Date.UTC(2026, 10, 1);
    await client.publishAsync(topic, JSON.stringify({ value: 20.5, ts }), { qos: 1 });
    const p = processor;
    await until("the first reading is stored", 15_000, async () => {
      return (await metric(p.httpPort, "telemetry_processor_readings_stored_total")) === 1;
    });
    await client.publishAsync(topic, JSON.stringify({ value: 20.5, ts }), { qos: 1 });
    await client.publishAsync(topic, JSON.stringify({ value: 99.9, ts }), { qos: 1 });
    await client.endAsync();
    await until("both copies are settled", 15_000, async () => {
      return (await metric(p.httpPort, "telemetry_processor_readings_received_total")) === 3;
    });
    await until("the conflict is dead-lettered", 15_000, async () => {
      return (await metric(p.httpPort, "telemetry_processor_conflicts_total")) === 1;
    });
    expect(await metric(processor.httpPort, "telemetry_processor_duplicates_total")).toBe(1);
    expect(readRows(names.dbPath).map((r) => r.value)).toEqual([20.5]);

    const conn = await amqp.connect(names.amqpUrl);
    try {
      const ch = await conn.createChannel();
      const dead = await ch.get(queueNames(names.queue).dead, { noAck: true });
      expect(dead).not.toBe(false);
      if (dead === false) return;
      const headers = dead.properties.headers ?? {};
      expect(headers["x-failure-kind"]).toBe("conflict");
      expect(String(headers["x-failure-reason"])).toMatch(
        /^conflicting reading for dev-1\/temperature at 2026-11-01T00:00:00\.000Z .*stored value 20\.5.*this one value 99\.9/,
      );
    } finally {
      await conn.close();
    }
    expect(processor.logs.some((l) => l.kind === "conflict")).toBe(true);
  });
});
