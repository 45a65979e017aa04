import type { Logger } from "../common/log.js";
import type { DropReason } from "./options.js";
import type { Damage } from "./segments.js";

/**
 * Where the spool reports what it could not keep: what the operator's policy dropped (by reason) and what damage
 * cost, counted in readings (a damaged stretch whose readings are unknown counts one per record, and its log says
 * so), and a record too large for the whole spool, which is never dropped.
 */
export class SpoolEvents {
  constructor(
    private readonly log: Logger,
    private readonly maxBytes: number,
    private readonly onDrop: ((reason: DropReason, records: number, messages: number) => void) | undefined,
  ) {}

  /**
   * A record of `bytes` holding `readings` cannot fit even an empty spool: logged as handed on (sent to RabbitMQ
   * directly) or as held (logged once per `first`); returns the readiness reason while held.
   */
  tooBig(bytes: number, readings: number, handed: boolean, first: boolean): string {
    const why = `spool record of ${bytes} bytes (${readings} readings) cannot fit SPOOL_MAX_BYTES ${this.maxBytes} even empty`;
    if (handed)
      this.log.warn({ bytes, readings }, `${why}: sent to RabbitMQ directly, PUBACK after its confirm`);
    else if (first) this.log.error({ bytes, readings }, `${why}: held, not PUBACKed`);
    return `${why}: held, not PUBACKed; raise SPOOL_MAX_BYTES`;
  }

  /** `records` holding `messages` readings dropped by a policy (`SPOOL_FULL`, `SPOOL_MAX_AGE`). */
  policy(reason: DropReason, records: number, messages: number): void {
    this.log.warn({ reason, records, messages }, "spool dropped records");
    this.onDrop?.(reason, records, messages);
  }

  /** The records of `damage` in segment file `segment` cannot be read: counted as `corrupt`, with where and why. */
  damaged(segment: string, damage: Damage): void {
    const { offset, fromSeq, toSeq, messages, why } = damage;
    const records = toSeq - fromSeq;
    this.log.error(
      { segment, offset, fromSeq, toSeq, records, readings: messages, why },
      messages === undefined
        ? "spool records damaged; dropped (their readings are unknown: counted as one per record)"
        : "spool records damaged; dropped",
    );
    this.onDrop?.("corrupt", records, messages ?? records);
  }

  /** The spool became full under SPOOL_FULL=block (`waiting` appends held), or has room again. */
  full(full: boolean, waiting: number): void {
    if (!full) this.log.info("spool has room again");
    else {
      this.log.warn(
        { maxBytes: this.maxBytes, waiting },
        "spool full (SPOOL_FULL=block): holding PUBACKs; the MQTT broker keeps the readings until space is freed",
      );
    }
  }
}
