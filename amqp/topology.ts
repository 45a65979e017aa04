import type { Channel, Options } from "amqplib";

export type QueueType = "quorum" | "classic";

/** How many times a quorum queue delivers a message before dead-lettering it (a poison message never loops). */
export const DELIVERY_LIMIT = 20;

/** The three queues of the contract: readings, raw rejected input, and dead-lettered messages. */
export function queueNames(queue: string) {
  return { readings: queue, rejected: `${queue}.rejected`, dead: `${queue}.dead` } as const;
}

/**
 * Declares `<QUEUE>`, `<QUEUE>.rejected` and `<QUEUE>.dead`, durable, with the same arguments from every service
 * (RabbitMQ refuses a re-declaration with other arguments). Messages dead-lettered by the broker itself (delivery
 * limit reached, rejected without requeue) go from `<QUEUE>` to `<QUEUE>.dead`.
 */
export async function declareTopology(ch: Channel, queue: string, type: QueueType): Promise<void> {
  const names = queueNames(queue);
  const base: Options.AssertQueue = { durable: true, arguments: { "x-queue-type": type } };
  const deadLettering: Record<string, unknown> = {
    "x-queue-type": type,
    "x-dead-letter-exchange": "",
    "x-dead-letter-routing-key": names.dead,
  };
  if (type === "quorum") {
    Object.assign(deadLettering, {
      "x-delivery-limit": DELIVERY_LIMIT,
      "x-dead-letter-strategy": "at-least-once",
      "x-overflow": "reject-publish",
    });
  }
  await ch.assertQueue(names.dead, base);
  await ch.assertQueue(names.rejected, base);
  await ch.assertQueue(names.readings, { durable: true, arguments: deadLettering });
}
