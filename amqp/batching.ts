/**
 * When the gateway's AMQP sink publishes the next message. Pure, so the rule is tested on its own
 * (test/unit/publish-rule.test.ts).
 */

/** Natural batching: readings that arrive while messages await their confirm go out together next. */
export interface BatchPolicy {
  /** Readings per message at most; 1 publishes single-reading messages (the format older processors read). */
  readonly maxReadings: number;
  /** Bytes of reading datums per message at most (a single reading larger than this still goes, alone). */
  readonly maxBytes: number;
  /** AMQP messages awaiting their confirm at once, under load (with `maxReadings` 1: no bound but upstream's). */
  readonly window: number;
}

/** What waits to be published, as the rule needs it. */
export interface Waiting {
  /** Messages awaiting their confirm. */
  readonly unconfirmed: number;
  /** Readings (or refused payloads) waiting to be published. */
  readonly pending: number;
  /** Bytes of the reading datums waiting. */
  readonly pendingBytes: number;
  /** The oldest waiting item is a refused payload, which goes alone. */
  readonly headAlone: boolean;
}

/**
 * Publish now? With nothing in flight, whatever waits goes at once: a lone reading never waits for company. While
 * messages await their confirm, only a full message goes (a whole batch of readings or of bytes, or a refused
 * payload), up to `window` in flight: readings that trickle in meanwhile gather into the message that leaves at the
 * next confirm, so the window grows only when readings arrive faster than one message a round trip carries. Fewer,
 * fuller messages cost RabbitMQ and both services less per reading than one message a reading each time a slot is
 * free, and a reading waits at most about two confirm round trips.
 */
export function publishNow(w: Waiting, policy: BatchPolicy, window: number): boolean {
  if (w.pending === 0) return false;
  if (w.unconfirmed === 0) return true;
  if (w.unconfirmed >= window) return false;
  return w.headAlone || w.pending >= policy.maxReadings || w.pendingBytes >= policy.maxBytes;
}
