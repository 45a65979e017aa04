/**
 * The one shape of both services (after Redpanda Connect's input/output): an **input** hands on each item with
 * the function that acknowledges it upstream, pure **steps** transform items, a **sink** writes them and calls
 * `ack` only once they are durable downstream. At-least-once delivery falls out of the shape: nothing is
 * acknowledged upstream that is not durable downstream, and what was not acknowledged is delivered again.
 *
 * gateway:   MQTT input -> validate -> encode -> AMQP sink
 * processor: AMQP input -> decode -> batch -> store sink
 */

/** What a part reports about itself; `/readyz` shows the first part that is not ready. */
export type Health = { readonly ready: true } | { readonly ready: false; readonly reason: string };

export const HEALTHY: Health = Object.freeze({ ready: true });

/** The first part that is not ready, or ready. */
export function firstUnhealthy(...parts: readonly Health[]): Health {
  for (const h of parts) if (!h.ready) return h;
  return HEALTHY;
}

/**
 * Something started that holds resources: `stop()` settles what is in flight and releases them (idempotent);
 * `await using x = await start(...)` calls it when the scope ends.
 */
export interface Running {
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Gives `target` the `Running` vocabulary: a `stop` that runs once, and `Symbol.asyncDispose` calling it. */
export function running<T extends object>(target: T, stop: () => Promise<void>): T & Running {
  let stopped: Promise<void> | undefined;
  const once = () => {
    stopped ??= stop();
    return stopped;
  };
  return Object.assign(target, { stop: once, [Symbol.asyncDispose]: once });
}

/** Why an item can never be processed: a fixed `kind` for metrics and headers, and a human `reason`. */
export interface Failure {
  readonly kind: string;
  readonly reason: string;
}

/**
 * An item travelling with its acknowledgement. `ack` is called exactly once, only when the item (or what it became
 * downstream) is durable; until then the upstream keeps it and delivers it again after a crash.
 */
export interface Delivery<T> {
  readonly item: T;
  ack(): void;
}

/**
 * A delivery from an input that can set an item aside: `fail` moves it where an operator can see and replay it
 * (the AMQP input: a copy on `<QUEUE>.dead` with the failure, then ack). Called instead of `ack`, at most once.
 */
export interface FailableDelivery<T> extends Delivery<T> {
  fail(failure: Failure): void;
}

/** Hands `delivery`'s acknowledgement on with a transformed item: what a step does. */
export function mapDelivery<A, B, D extends Delivery<A>>(
  delivery: D,
  item: B,
): Omit<D, "item"> & { item: B } {
  return { ...delivery, item };
}

/**
 * An input: started with the handler that takes each delivery (called synchronously, in arrival order); stops
 * taking new items on `stop()` and settles the acknowledgements already given. It reconnects by itself.
 */
export interface Input extends Running {
  health(): Health;
}

/**
 * A sink: `write` never throws and never drops; the sink keeps the item (retrying across reconnects, nacks and
 * full queues) until it is durable downstream, then calls the delivery's `ack`, once.
 */
export interface Sink<T, D extends Delivery<T> = Delivery<T>> extends Running {
  write(delivery: D): void;
  /** Items written and not yet acknowledged. */
  readonly inFlight: number;
  health(): Health;
}
