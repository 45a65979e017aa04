import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import amqp, { type ChannelModel } from "amqplib";
import { backoffDelay, sleep } from "../common/backoff.js";
import { splitUrlList } from "../common/config.js";
import type { Logger } from "../common/log.js";
import type { Health } from "../common/pipeline.js";
import type { TlsMaterial } from "../common/tls.js";
import {
  AmqpConfigurationError,
  type AmqpProblem,
  brokerAddress,
  CONNECT_TIMEOUT_MS,
  describeAmqpError,
} from "./problems.js";

const RECONNECT_MIN_MS = 200;
const RECONNECT_MAX_MS = 15_000;
/**
 * amqplib closes a connection after two heartbeat intervals without a frame from the broker (checked once per
 * interval, so 2-3 intervals): 5 s notices a hung broker or a cut network in 10-15 s, and stays within RabbitMQ's
 * advice (5-20 s) against false alarms on a busy link. `?heartbeat=N` in AMQP_URL overrides it.
 */
const HEARTBEAT_SECONDS = 5;
/** How long `close()` waits for RabbitMQ's close-ok before dropping the socket (a hung broker never sends it). */
const CLOSE_TIMEOUT_MS = 2_000;
/** Retry interval after a mistake retrying sooner cannot cure (wrong password, a queue declared otherwise). */
const MISTAKE_RETRY_MS = 10_000;

/** Adds a heartbeat to the URL unless the user chose one, so a dead or hung peer is noticed within seconds. */
function withHeartbeat(url: string): string {
  const u = new URL(url);
  if (!u.searchParams.has("heartbeat")) u.searchParams.set("heartbeat", String(HEARTBEAT_SECONDS));
  return u.toString();
}

/** The heartbeat asked for (the URL's, else ours), in seconds; 0 means none. */
function heartbeatOf(url: string): number {
  const asked = Number(new URL(withHeartbeat(url)).searchParams.get("heartbeat"));
  return Number.isFinite(asked) && asked > 0 ? asked : 0;
}

/** amqplib keeps the socket untyped on `connection.stream`; it is the one handle a hung broker leaves open. */
function socketOf(conn: ChannelModel): Duplex | undefined {
  return (conn.connection as unknown as { stream?: Duplex }).stream;
}

/** For each connection, a promise of amqplib's "close" event (with the error it closed with, if any). */
const closings = new WeakMap<ChannelModel, Promise<Error | undefined>>();

/**
 * Watches a new connection: logs its errors (an "error" event without a listener would kill the process), and
 * once amqplib has closed it, destroys its socket (amqplib only ends it, and a half-closed socket to a hung broker
 * keeps the process alive). Returns the promise of its close; call it before anything can close the connection.
 */
function watch(conn: ChannelModel, log: Logger, broker: string): Promise<Error | undefined> {
  let closed = closings.get(conn);
  if (!closed) {
    closed = new Promise((resolve) => {
      conn.once("close", (err?: Error) => {
        socketOf(conn)?.destroy();
        resolve(err);
      });
    });
    conn.on("error", (err: Error) => log.warn({ broker, err: err.message }, "amqp connection error"));
    closings.set(conn, closed);
  }
  return closed;
}

/**
 * Closes a watched connection, waiting at most CLOSE_TIMEOUT_MS for RabbitMQ's close-ok. A hung broker never sends
 * it: the socket is then destroyed with an error, which makes amqplib close the connection on its side too (a bare
 * destroy would leave its heartbeat timer running and its "close" event unsent).
 */
async function closeConnection(conn: ChannelModel): Promise<void> {
  const closed = closings.get(conn);
  // Rejects when a close is already under way (a channel handler may have started one) or done: the wait covers both.
  conn.close().catch(() => undefined);
  if (!closed) return;
  const timeout = new AbortController();
  const done = await Promise.race([
    closed.then(() => true),
    sleep(CLOSE_TIMEOUT_MS, timeout.signal).then(() => false),
  ]);
  timeout.abort();
  if (!done) {
    socketOf(conn)?.destroy(new Error(`no close-ok within ${CLOSE_TIMEOUT_MS} ms; connection dropped`));
    await closed;
  }
}

export interface AmqpSessionOptions {
  /**
   * One node, or several nodes of one RabbitMQ cluster as full URLs separated by commas
   * (`amqp://u:p@h1:5672,amqp://u:p@h2:5672`): the session tries them in turn from a random one.
   */
  url: string;
  /** Connection name shown in the RabbitMQ management UI and `rabbitmqctl list_connections client_properties`. */
  name: string;
  /** CA, client certificate and key for an `amqps://` URL, read once at start (amqplib ignores them otherwise). */
  tls?: TlsMaterial | undefined;
  log: Logger;
  /**
   * Called after each successful connection: create channels, declare, consume. If it throws, the connection is
   * closed and the attempt counts as failed (an `AmqpConfigurationError` is shown as it is and retried slowly).
   * Channels it creates must be closed by the connection's end.
   */
  onConnect: (conn: ChannelModel) => Promise<void>;
  /** Called once per lost connection, before reconnecting; not called after close(). */
  onDisconnect: (err: Error | undefined) => void;
}

/**
 * One logical AMQP connection that stays up: connects, and after any loss (broker restart, network, a channel
 * error, missed heartbeats) reconnects forever with exponential backoff and full jitter, calling `onConnect` again
 * each time. With a list of nodes in the URL it starts from a random node (so services spread over the cluster)
 * and moves to the next node of the list after each failed attempt or lost connection; the backoff grows only
 * once a whole round of nodes has failed. Every failed attempt is one log line naming the node's `host:port` and
 * the reason, and `health()` holds the latest. Emits "blocked" (reason) / "unblocked" when RabbitMQ blocks
 * publishers on a resource alarm.
 */
export class AmqpSession extends EventEmitter {
  #conn: ChannelModel | undefined;
  /** The connection whose `onConnect` is running: closed by `close()` too, so a start that hangs there ends. */
  #opening: ChannelModel | undefined;
  #closing = false;
  #stopped = new AbortController();
  #loop: Promise<void> | undefined;
  /** The nodes of the URL, parsed once, each with its heartbeat. */
  readonly #nodes: readonly { readonly url: string; readonly address: string }[];
  /** Index in `#nodes` of the node connected to, or tried next. */
  #current: number;
  #health: Health;
  /**
   * RabbitMQ sends a frame at least every half heartbeat, even when idle: silence for a whole heartbeat (two
   * missed) means a hung broker or a cut network. `health()` says so at once, without waiting the two to three
   * heartbeats amqplib takes to give the connection up. 0: no heartbeat, no check.
   */
  readonly #silenceMs: number;
  /** When the current connection's socket last had something to read. */
  #heardAt = 0;

  constructor(private readonly opts: AmqpSessionOptions) {
    super();
    const urls = splitUrlList(opts.url);
    if (urls.length === 0) throw new Error("AmqpSession needs at least one URL");
    this.#nodes = urls.map((url) => ({ url: withHeartbeat(url), address: brokerAddress(url) }));
    // A random first node spreads the services of a cluster over its nodes.
    this.#current = Math.floor(Math.random() * this.#nodes.length);
    this.#health = { ready: false, reason: `rabbitmq not connected: connecting to ${this.#broker}` };
    // The shortest heartbeat asked for, so a silent node is never noticed later than its own heartbeat allows.
    const beats = urls.map(heartbeatOf).filter((b) => b > 0);
    this.#silenceMs = beats.length === 0 ? 0 : Math.min(...beats) * 1_000;
  }

  /** `host:port` of the node the session is connected to, or tries next. */
  get #broker(): string {
    return (this.#nodes[this.#current] as { address: string }).address;
  }

  /** `host:port` of the node the session is connected to (or tries next): what logs and status name. */
  get node(): string {
    return this.#broker;
  }

  get connected(): boolean {
    return this.#conn !== undefined;
  }

  /** Moves on to the next node of the list (a no-op with one node). */
  #nextNode(): void {
    this.#current = (this.#current + 1) % this.#nodes.length;
  }

  /**
   * Ready while connected, `onConnect` has finished and the broker has been heard from within a heartbeat;
   * otherwise why not, e.g. `rabbitmq not connected: 127.0.0.1:5672 refused the connection (...)`, `rabbitmq not
   * answering: ...` (connected, silent), or an `AmqpConfigurationError`'s line after `rabbitmq: `. A part built on
   * the session asks this first, connected or not.
   */
  health(): Health {
    const silentMs = Date.now() - this.#heardAt;
    if (this.#conn && this.#silenceMs > 0 && silentMs > this.#silenceMs) {
      return {
        ready: false,
        reason:
          `rabbitmq not answering: ${this.#broker} has sent nothing for ${Math.floor(silentMs / 1_000)} s ` +
          "(a hung broker or a network cut)",
      };
    }
    return this.#health;
  }

  /**
   * Starts the connect loop; resolves once the first connection is up and `onConnect` has finished. When `signal`
   * aborts first, the session closes (no more attempts) and the promise rejects with the signal's reason; after the
   * first connection the signal is ignored (`close()` ends the session then). Rejects too if `close()` is called
   * before the first connection.
   */
  start(signal?: AbortSignal): Promise<void> {
    if (this.#loop) return Promise.reject(new Error("AmqpSession.start called twice"));
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        this.#closing = true;
        reject(signal.reason);
        return;
      }
      const onAbort = () => {
        this.close().then(
          () => reject(signal?.reason),
          () => reject(signal?.reason),
        );
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#loop = this.#run(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      this.#loop.then(
        () => {
          signal?.removeEventListener("abort", onAbort);
          reject(new Error("AmqpSession closed before it connected"));
        },
        (err: unknown) => reject(err),
      );
    });
  }

  /** Records why the session is not connected, for `health()`, and returns it for the log. */
  #failed(err: unknown): AmqpProblem {
    const problem = describeAmqpError(err, this.#broker);
    const prefix = err instanceof AmqpConfigurationError ? "rabbitmq" : "rabbitmq not connected";
    this.#health = { ready: false, reason: `${prefix}: ${problem.text}` };
    return problem;
  }

  /** `amqp.connect`, given up at once when the session closes (a connection that opens after that is closed). */
  async #connect(): Promise<ChannelModel | undefined> {
    const connecting = amqp.connect((this.#nodes[this.#current] as { url: string }).url, {
      ...this.opts.tls,
      timeout: CONNECT_TIMEOUT_MS,
      // amqplib leaves Nagle's algorithm on: a publish or ack written while an earlier segment is unacknowledged
      // waited for RabbitMQ's delayed ACK (about 40 ms on Linux), most of the pipeline's latency at light load.
      noDelay: true,
      clientProperties: { connection_name: this.opts.name },
    });
    const stopped = this.#stopped.signal;
    let onStop: () => void = () => undefined;
    try {
      const conn = await Promise.race([
        connecting.then((c) => {
          watch(c, this.opts.log, this.#broker);
          return c;
        }),
        new Promise<undefined>((resolve) => {
          onStop = () => resolve(undefined);
          if (stopped.aborted) onStop();
          else stopped.addEventListener("abort", onStop, { once: true });
        }),
      ]);
      if (!conn) connecting.then(closeConnection, () => undefined);
      return conn;
    } finally {
      stopped.removeEventListener("abort", onStop);
    }
  }

  async #run(firstUp: () => void): Promise<void> {
    const { log } = this.opts;
    const nodes = this.#nodes.length;
    let attempt = 0;
    while (!this.#closing) {
      attempt++;
      const broker = this.#broker;
      let conn: ChannelModel | undefined;
      let delay: number;
      try {
        conn = await this.#connect();
        if (!conn) break;
        const opened = conn;
        this.#opening = opened;
        const lost = watch(opened, log, broker);
        this.#heardAt = Date.now();
        // An extra "readable" listener only observes: amqplib's own listener still reads every byte.
        socketOf(opened)?.on("readable", () => {
          this.#heardAt = Date.now();
        });
        opened.on("blocked", (reason: string) => this.emit("blocked", reason));
        opened.on("unblocked", () => this.emit("unblocked"));
        await this.opts.onConnect(opened);
        this.#opening = undefined;
        if (this.#closing) break;
        this.#conn = opened;
        this.#health = { ready: true };
        log.info({ broker, attempt }, "amqp connected");
        attempt = 0;
        firstUp();
        const err = await lost;
        this.#conn = undefined;
        if (this.#closing) break;
        const problem = this.#failed(err ?? new Error("closed by the broker"));
        this.#nextNode();
        log.warn(
          { broker, err: problem.text, ...(nodes > 1 ? { next: this.#broker } : {}) },
          "amqp connection lost; reconnecting",
        );
        this.opts.onDisconnect(err);
        delay = backoffDelay(1, RECONNECT_MIN_MS, RECONNECT_MAX_MS);
      } catch (err) {
        this.#opening = undefined;
        if (conn) await closeConnection(conn);
        if (this.#closing) break;
        const problem = this.#failed(err);
        this.#nextNode();
        // Each node of a round is tried at the first backoff step; the wait grows with whole rounds that failed.
        const round = Math.ceil(attempt / nodes);
        delay = problem.mistake ? MISTAKE_RETRY_MS : backoffDelay(round, RECONNECT_MIN_MS, RECONNECT_MAX_MS);
        log.warn(
          {
            broker,
            attempt,
            retryInMs: delay,
            err: problem.text,
            ...(nodes > 1 ? { next: this.#broker } : {}),
          },
          "amqp connect failed",
        );
      }
      await sleep(delay, this.#stopped.signal);
    }
    if (this.#opening) await closeConnection(this.#opening);
    this.#opening = undefined;
  }

  /** Stops reconnecting and closes the connection (and with it every channel), within a few seconds even if the broker hangs. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#stopped.abort();
    const conns = [this.#conn, this.#opening];
    this.#conn = undefined;
    this.#health = { ready: false, reason: "rabbitmq connection closed" };
    await Promise.all(conns.map((c) => c && closeConnection(c)));
    await this.#loop?.catch(() => undefined);
  }
}
