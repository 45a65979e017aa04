import type { Channel, Options } from "amqplib";
import { AmqpConfigurationError } from "./session.js";

export type QueueType = "quorum" | "classic";

/** How many times a quorum queue delivers a message before dead-lettering it (a poison message never loops). */
export const DELIVERY_LIMIT = 20;

/** The three queues of the contract: readings, raw rejected input, and dead-lettered messages. */
export function queueNames(queue: string) {
  return { readings: queue, rejected: `${queue}.rejected`, dead: `${queue}.dead` } as const;
}

/** AMQP reply code of a re-declaration with other arguments (the broker then closes the channel). */
const PRECONDITION_FAILED = 406;
/** RabbitMQ's words for it: `inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received 'quorum' but current is 'classic'`. */
const INEQUIVALENT =
  /inequivalent arg '([^']+)' for queue '([^']+)' in vhost '[^']*': received (.+?) but current is (.+?)"?$/;

/**
 * The one line an operator needs when RabbitMQ refused to declare `queue` as `type` because it exists with other
 * arguments (`rabbitMessage`: amqplib's error message, holding RabbitMQ's PRECONDITION_FAILED text). Pure.
 */
export function describeQueueMismatch(queue: string, type: QueueType, rabbitMessage: string): string {
  const m = INEQUIVALENT.exec(rabbitMessage);
  const fix = "delete it (after moving its messages) so that it is declared again";
  if (m?.[1] === "x-queue-type") {
    const current = m[4] === "none" ? "classic" : m[4]!.replace(/^'|'$/g, "");
    return `queue ${m[2]} exists as ${current} but QUEUE_TYPE is ${type}: ${fix}, or set QUEUE_TYPE=${current}`;
  }
  const detail = m ? `${m[1]}: declared ${m[3]}, the queue has ${m[4]}` : rabbitMessage;
  return (
    `queue ${m?.[2] ?? queue} exists with other arguments than this service declares for QUEUE_TYPE=${type} ` +
    `(${detail}; declared by another version, by hand, or of the other type): ${fix}`
  );
}

/** `ch.assertQueue`, a refusal for other arguments turned into an `AmqpConfigurationError` saying what to do. */
async function assertQueue(ch: Channel, queue: string, type: QueueType, options: Options.AssertQueue) {
  try {
    await ch.assertQueue(queue, options);
  } catch (err) {
    if ((err as { code?: unknown }).code !== PRECONDITION_FAILED) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new AmqpConfigurationError(describeQueueMismatch(queue, type, message), { cause: err });
  }
}

/**
 * Declares `<QUEUE>`, `<QUEUE>.rejected` and `<QUEUE>.dead`, durable, with the same arguments from every service
 * (RabbitMQ refuses a re-declaration with other arguments). Messages dead-lettered by the broker itself (delivery
 * limit reached, rejected without requeue) go from `<QUEUE>` to `<QUEUE>.dead`. A queue that exists with other
 * arguments (classic where quorum is configured, or the reverse) rejects with an `AmqpConfigurationError` whose
 * message names the queue and the fix; the channel is closed by RabbitMQ then.
 */
export async function declareTopology(ch: Channel, queue: string, type: QueueType): Promise<void> {
  const names = queueNames(queue);
  // A full queue must push back (nack) rather than drop its oldest messages (RabbitMQ's default overflow), for a
  // length limit given here or by an operator's policy: a publisher confirm would otherwise vouch for a lost reading.
  const shared = { "x-queue-type": type, "x-overflow": "reject-publish" };
  const base: Options.AssertQueue = { durable: true, arguments: shared };
  const deadLettering: Record<string, unknown> = {
    ...shared,
    "x-dead-letter-exchange": "",
    "x-dead-letter-routing-key": names.dead,
  };
  if (type === "quorum") {
    Object.assign(deadLettering, {
      "x-delivery-limit": DELIVERY_LIMIT,
      "x-dead-letter-strategy": "at-least-once",
    });
  }
  await assertQueue(ch, names.dead, type, base);
  await assertQueue(ch, names.rejected, type, base);
  await assertQueue(ch, names.readings, type, { durable: true, arguments: deadLettering });
}
