import { execFile } from "node:child_process";
import { promisify } from "node:util";
import amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AmqpConfigurationError } from "../../amqp/problems.js";
import { DELIVERY_LIMIT, declareTopology, declareTopologyOn, queueNames } from "../../amqp/topology.js";
import { cleanup, type TestNames, testNames } from "../helpers/services.js";

const execFileAsync = promisify(execFile);

/** `rabbitmqctl list_queues name type durable arguments` rows for `queues`, in that order (the broker's own view). */
async function listQueues(queues: readonly string[]): Promise<string[]> {
  const { stdout } = await execFileAsync("rabbitmqctl", [
    "list_queues",
    "name",
    "type",
    "durable",
    "arguments",
    "--no-table-headers",
    "--quiet",
  ]);
  const rows = stdout.split("\n").filter(Boolean);
  return queues.map((queue) => rows.find((row) => row.split("\t")[0] === queue) ?? `${queue}: missing`);
}

/** Messages ready on each of the three queues, asked on `ch` (which fails if the channel was closed). */
async function messageCounts(ch: amqp.Channel, q: ReturnType<typeof queueNames>) {
  const count = async (queue: string) => (await ch.checkQueue(queue)).messageCount;
  return { readings: await count(q.readings), rejected: await count(q.rejected), dead: await count(q.dead) };
}

describe("queue topology", () => {
  let names: TestNames;
  let conn: amqp.ChannelModel;

  beforeAll(async () => {
    names = testNames("topology");
    conn = await amqp.connect(names.amqpUrl);
  });

  afterAll(async () => {
    await conn.close();
    await cleanup(names);
  });

  it("declaring twice with the same settings is accepted (both services declare): no channel error, the queues keep their arguments and their messages", async () => {
    const q = queueNames(names.queue);
    const ch = await conn.createChannel();
    const channelErrors: unknown[] = [];
    ch.on("error", (err: unknown) => channelErrors.push(err));
    ch.on("close", () => channelErrors.push("channel closed"));
    await declareTopology(ch, names.queue, "quorum");
    for (const queue of Object.values(q)) ch.sendToQueue(queue, Buffer.from(queue), { persistent: true });
    await vi.waitFor(async () =>
      expect(await messageCounts(ch, q)).toEqual({ readings: 1, rejected: 1, dead: 1 }),
    );
    const before = await listQueues(Object.values(q));
    expect(before.map((row) => row.split("\t")[0])).toEqual([q.readings, q.rejected, q.dead]);

    // The second service declares on its own channel (declareTopologyOn, as the services do); then this channel again.
    const legacy: string[] = [];
    await declareTopologyOn(conn, names.queue, "quorum", (queue) => legacy.push(queue));
    await declareTopology(ch, names.queue, "quorum");

    expect(legacy, "no queue taken for one of an earlier release").toEqual([]);
    expect(channelErrors, "RabbitMQ closed the channel").toEqual([]);
    expect(await messageCounts(ch, q), "the messages are still there").toEqual({
      readings: 1,
      rejected: 1,
      dead: 1,
    });
    expect(await listQueues(Object.values(q)), "type, durability and arguments unchanged").toEqual(before);
    for (const queue of Object.values(q)) await ch.purgeQueue(queue);
    await ch.close();
  });

  it(`a message that keeps failing is dead-lettered after ${DELIVERY_LIMIT} redeliveries, not redelivered forever`, async () => {
    const { readings, dead } = queueNames(names.queue);
    const ch = await conn.createChannel();
    await declareTopology(ch, names.queue, "quorum");
    ch.sendToQueue(readings, Buffer.from("crashes the consumer"), {
      persistent: true,
      messageId: "poison-1",
    });
    let deliveries = 0;
    await ch.consume(readings, (m) => {
      if (!m) return;
      deliveries++;
      ch.nack(m, false, true);
    });
    await vi.waitFor(async () => expect((await ch.checkQueue(dead)).messageCount).toBe(1), {
      timeout: 20_000,
    });
    const m = await ch.get(dead, { noAck: true });
    expect(m ? m.properties.messageId : undefined).toBe("poison-1");
    expect(deliveries).toBeGreaterThan(DELIVERY_LIMIT);
    expect(deliveries).toBeLessThanOrEqual(DELIVERY_LIMIT + 1);
    await ch.close();
  });

  it("queues an earlier release declared without x-overflow are taken as they are, each named once; a queue of the other type is still refused", async () => {
    const legacy = testNames("topology-legacy");
    try {
      const q = queueNames(legacy.queue);
      const ch = await conn.createChannel();
      // As the release before batching declared them for QUEUE_TYPE=classic: no x-overflow anywhere.
      await ch.assertQueue(q.dead, { durable: true, arguments: { "x-queue-type": "classic" } });
      await ch.assertQueue(q.rejected, { durable: true, arguments: { "x-queue-type": "classic" } });
      await ch.assertQueue(q.readings, {
        durable: true,
        arguments: {
          "x-queue-type": "classic",
          "x-dead-letter-exchange": "",
          "x-dead-letter-routing-key": q.dead,
        },
      });
      await ch.close();
      const named: string[] = [];
      await declareTopologyOn(conn, legacy.queue, "classic", (queue) => named.push(queue));
      expect(named).toEqual([q.dead, q.rejected, q.readings]);
      await expect(declareTopologyOn(conn, legacy.queue, "quorum", () => undefined)).rejects.toThrow(
        AmqpConfigurationError,
      );
    } finally {
      await cleanup(legacy);
    }
  });
});
