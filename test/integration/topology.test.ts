import amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { DELIVERY_LIMIT, declareTopology, queueNames } from "../../amqp/topology.js";
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
});
