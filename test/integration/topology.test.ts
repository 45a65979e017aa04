import amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AmqpConfigurationError } from "../../amqp/session.js";
import { DELIVERY_LIMIT, declareTopology, declareTopologyOn, queueNames } from "../../amqp/topology.js";
import { cleanup, type TestNames, testNames } from "../helpers/services.js";

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

  it("declaring twice with the same settings is accepted (both services declare)", async () => {
    const ch = await conn.createChannel();
    await declareTopology(ch, names.queue, "quorum");
    await declareTopology(ch, names.queue, "quorum");
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
