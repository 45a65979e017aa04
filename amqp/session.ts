import { EventEmitter } from "node:events";
import amqp, { type ChannelModel } from "amqplib";
import { backoffDelay, sleep } from "../common/backoff.js";
import type { Logger } from "../common/log.js";

const RECONNECT_MIN_MS = 200;
const RECONNECT_MAX_MS = 15_000;
const HEARTBEAT_SECONDS = 10;

/** Adds a heartbeat to the URL unless the user chose one, so a dead peer is noticed within seconds. */
function withHeartbeat(url: string): string {
  const u = new URL(url);
  if (!u.searchParams.has("heartbeat")) u.searchParams.set("heartbeat", String(HEARTBEAT_SECONDS));
  return u.toString();
}

export interface AmqpSessionOptions {
  url: string;
  /** Connection name shown in the RabbitMQ management UI and `rabbitmqctl list_connections client_properties`. */
  name: string;
  log: Logger;
  /**
   * Called after each successful connection: create channels, declare, consume. If it throws, the connection is
   * closed and the attempt counts as failed. Channels it creates must be closed by the connection's end.
   */
  onConnect: (conn: ChannelModel) => Promise<void>;
  /** Called once per lost connection, before reconnecting; not called after close(). */
  onDisconnect: (err: Error | undefined) => void;
}

/**
 * One logical AMQP connection that stays up: connects, and after any loss (broker restart, network, a channel
 * error) reconnects forever with exponential backoff and full jitter, calling `onConnect` again each time.
 * Emits "blocked" (reason) / "unblocked" when RabbitMQ blocks publishers on a resource alarm.
 */
export class AmqpSession extends EventEmitter {
  #conn: ChannelModel | undefined;
  #closing = false;
  #stopped = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(private readonly opts: AmqpSessionOptions) {
    super();
  }

  get connected(): boolean {
    return this.#conn !== undefined;
  }

  /** Starts the connect loop; resolves once the first connection is up and `onConnect` has finished. */
  start(): Promise<void> {
    let firstUp!: () => void;
    const first = new Promise<void>((resolve) => {
      firstUp = resolve;
    });
    this.#loop = this.#run(firstUp);
    return Promise.race([first, this.#loop]);
  }

  async #run(firstUp: () => void): Promise<void> {
    const { log } = this.opts;
    let attempt = 0;
    while (!this.#closing) {
      attempt++;
      let conn: ChannelModel | undefined;
      try {
        conn = await amqp.connect(withHeartbeat(this.opts.url), {
          clientProperties: { connection_name: this.opts.name },
        });
        const lost = new Promise<Error | undefined>((resolve) => {
          conn?.on("close", (err?: Error) => resolve(err));
          conn?.on("error", (err: Error) => log.warn({ err: err.message }, "amqp connection error"));
        });
        conn.on("blocked", (reason: string) => this.emit("blocked", reason));
        conn.on("unblocked", () => this.emit("unblocked"));
        await this.opts.onConnect(conn);
        if (this.#closing) break;
        this.#conn = conn;
        log.info({ attempt }, "amqp connected");
        attempt = 0;
        firstUp();
        const err = await lost;
        this.#conn = undefined;
        if (this.#closing) break;
        log.warn({ err: err?.message }, "amqp connection lost; reconnecting");
        this.opts.onDisconnect(err);
      } catch (err) {
        if (conn) await conn.close().catch(() => undefined);
        if (this.#conn === conn) this.#conn = undefined;
        if (this.#closing) break;
        log.warn({ attempt, err: err instanceof Error ? err.message : String(err) }, "amqp connect failed");
      }
      await sleep(
        backoffDelay(Math.max(attempt, 1), RECONNECT_MIN_MS, RECONNECT_MAX_MS),
        this.#stopped.signal,
      );
    }
  }

  /** Stops reconnecting and closes the connection (and with it every channel). */
  async close(): Promise<void> {
    this.#closing = true;
    this.#stopped.abort();
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn) await conn.close().catch(() => undefined);
    await this.#loop?.catch(() => undefined);
  }
}
