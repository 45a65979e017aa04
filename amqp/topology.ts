import type { Channel, ChannelModel, Options } from "amqplib";
import type { Logger } from "../common/log.js";
import { AmqpConfigurationError } from "./problems.js";

export type QueueType = "quorum" | "classic";

/** How many times a quorum queue delivers a message before dead-lettering it (a poison message never loops). */
export const DELIVERY_LIMIT = 20;

/** The three queues of the contract: readings, raw rejected input, and dead-lettered messages. */
export function queueNames(queue: string) {
  return { readings: queue, rejected: `${queue}.rejected`, dead: `${queue}.dead` } as const;
}

const OVERFLOW = "x-overflow";
/** RabbitMQ's refusal of `x-overflow` on a queue declared without it (by a release before it was declared). */
const LEGACY_OVERFLOW =
  /inequivalent arg 'x-overflow' for queue '[^']+' in vhost '[^']*': received .*'reject-publish'.* but current is none/;

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

/** The contract's three queues with the arguments every service declares them with, the dead-letter queue first. */
function declarations(queue: string, type: QueueType): { name: string; options: Options.AssertQueue }[] {
  const names = queueNames(queue);
  // A full queue must push back (nack) rather than drop its oldest messages (RabbitMQ's default overflow), for a
  // length limit given here or by an operator's policy: a publisher confirm would otherwise vouch for a lost reading.
  const shared = { "x-queue-type": type, [OVERFLOW]: "reject-publish" };
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
  return [
    { name: names.dead, options: { durable: true, arguments: shared } },
    { name: names.rejected, options: { durable: true, arguments: shared } },
    { name: names.readings, options: { durable: true, arguments: deadLettering } },
  ];
}

/**
 * Declares `<QUEUE>`, `<QUEUE>.rejected` and `<QUEUE>.dead`, durable, with the same arguments from every service
 * (RabbitMQ refuses a re-declaration with other arguments). Messages dead-lettered by the broker itself (delivery
 * limit reached, rejected without requeue) go from `<QUEUE>` to `<QUEUE>.dead`. A queue that exists with other
 * arguments (classic where quorum is configured, or the reverse) rejects with an `AmqpConfigurationError` whose
 * message names the queue and the fix; the channel is closed by RabbitMQ then.
 */
export async function declareTopology(ch: Channel, queue: string, type: QueueType): Promise<void> {
  for (const d of declarations(queue, type)) await assertQueue(ch, d.name, type, d.options);
}

/**
 * What the services use: `declareTopology` on channels of its own, tolerant of queues declared by releases before
 * `x-overflow: reject-publish` (they refuse a re-declaration that adds it): such a queue is declared as it is, and
 * `onLegacy` is told once per queue, so the operator can set an overflow policy or re-create it. Any other mismatch
 * rejects with an `AmqpConfigurationError` as `declareTopology` does.
 */
export async function declareTopologyOn(
  conn: ChannelModel,
  queue: string,
  type: QueueType,
  onLegacy: (queue: string) => void,
): Promise<void> {
  for (const d of declarations(queue, type)) {
    const ch = await conn.createChannel();
    ch.on("error", () => undefined); // a refused declaration closes the channel; the rejection says why
    try {
      await assertQueue(ch, d.name, type, d.options);
      await ch.close();
      continue;
    } catch (err) {
      const legacy = err instanceof AmqpConfigurationError && LEGACY_OVERFLOW.test(String(err.cause));
      if (!legacy) throw err;
    }
    const { [OVERFLOW]: _, ...without } = d.options.arguments as Record<string, unknown>;
    const again = await conn.createChannel();
    again.on("error", () => undefined);
    await assertQueue(again, d.name, type, { ...d.options, arguments: without });
    await again.close();
    onLegacy(d.name);
  }
}

/** The `onLegacy` of `declareTopologyOn` that services use: one warning per queue and process, saying what to do. */
export function warnLegacyQueues(log: Logger): (queue: string) => void {
  const warned = new Set<string>();
  return (queue) => {
    if (warned.has(queue)) return;
    warned.add(queue);
    log.warn(
      { queue },
      `queue ${queue} was declared by an earlier release without x-overflow reject-publish: a length limit on it ` +
        `would drop its oldest messages; set a policy with {"overflow":"reject-publish"} on it, or re-create it ` +
        "(after moving its messages)",
    );
  };
}
