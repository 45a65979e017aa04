/** The spool store's options and what it reports, apart so that the store itself stays one screenful of logic. */
import type { Logger } from "../common/log.js";

/** What the spool does with a new record when it is full (`SPOOL_FULL`). */
export type FullPolicy = "block" | "drop-oldest" | "drop-newest";
/** Why records left the spool unsent; the label of the drops metric. */
export type DropReason = "drop-oldest" | "drop-newest" | "max-age" | "corrupt";

export interface SpoolOptions {
  /** The spool's directory (created if missing). */
  readonly dir: string;
  /** Bytes of segment files at most (`SPOOL_MAX_BYTES`). */
  readonly maxBytes: number;
  /** Records older than this are dropped, a whole segment at a time (`SPOOL_MAX_AGE`). */
  readonly maxAgeMs: number;
  readonly full: FullPolicy;
  readonly log: Logger;
  /** Called for every drop with the records and messages dropped. */
  readonly onDrop?: (reason: DropReason, records: number, messages: number) => void;
}

/** Depth of the spool: what is stored and not yet confirmed downstream. */
export interface SpoolDepth {
  readonly records: number;
  readonly messages: number;
  /** Bytes of segment files on disk (done records too, until their whole segment goes). */
  readonly bytes: number;
  readonly segments: number;
  /** Append time of the oldest record not yet done, epoch ms; undefined when empty. */
  readonly oldestAppendedAt: number | undefined;
}
