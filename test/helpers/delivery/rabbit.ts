/** RabbitMQ helpers of the AMQP adapters: rabbitmqctl, a confirm channel, the test's queues, a tapped URL. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import amqp, { type ConfirmChannel } from "amqplib";
import { queueNames } from "../../../amqp/topology.js";
import type { PrivateRabbit } from "../private-brokers.js";
import type { Tap } from "./tcp-tap.js";

const execFileAsync = promisify(execFile);

/** `rabbitmqctl` on the shared broker, or `ctl` of a private node. */
function rabbitCtl(broker: PrivateRabbit | undefined, ...args: string[]): Promise<string> {
  if (broker) return broker.ctl(...args);
  return execFileAsync("rabbitmqctl", args, { timeout: 60_000 }).then((r) => r.stdout);
}

/** Whether RabbitMQ lists a connection named `name` (the part's connection name). */
export async function rabbitHasConnection(broker: PrivateRabbit | undefined, name: string): Promise<boolean> {
  const listed = await rabbitCtl(broker, "-q", "list_connections", "client_properties");
  return listed.includes(name);
}

/** Opens a connection and confirm channel, runs `use`, closes. */
export async function withConfirmChannel<T>(
  url: string,
  use: (ch: ConfirmChannel) => Promise<T>,
): Promise<T> {
  const conn = await amqp.connect(url);
  conn.on("error", () => undefined);
  try {
    const ch = await conn.createConfirmChannel();
    return await use(ch);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Deletes the test's three queues (`queueNames(queue)`). */
export async function deleteQueues(url: string, queue: string): Promise<void> {
  await withConfirmChannel(url, async (ch) => {
    for (const q of Object.values(queueNames(queue))) await ch.deleteQueue(q);
  });
}

/** `url` with its host and port replaced by the tap's. */
export function through(tap: Tap, url: string): string {
  const u = new URL(url);
  u.host = tap.address;
  return u.toString();
}
