/**
 * What the spool still owes downstream: which records are done (confirmed by RabbitMQ, or dropped) and how many
 * messages the rest hold. Done is every seq below `prefix` (what the cursor file records) and, above it, sorted,
 * disjoint [from, to) ranges: confirms arrive out of order, and the prefix moves on as the gaps below a range fill.
 */
import type { Segment } from "./segment-log.js";
import { scanSegment } from "./segments.js";

export class Ledger {
  #prefix: number;
  #above: [number, number][] = [];
  #messages = 0;

  /** Starts at `prefix`, counting the messages not done in `segments` (one scan for a segment the prefix cuts). */
  constructor(prefix: number, segments: readonly Segment[]) {
    this.#prefix = prefix;
    for (const s of segments) {
      if (s.first + s.records <= prefix) continue;
      this.#messages +=
        s.first >= prefix
          ? s.messages
          : scanSegment(s.path, { verify: false, countFrom: prefix }).messagesFrom;
    }
  }

  /** The first seq not done. */
  get prefix(): number {
    return this.#prefix;
  }

  /** Messages in records not done. */
  get messages(): number {
    return this.#messages;
  }

  /** Records not done below `end` (the durable end). */
  records(end: number): number {
    return end - this.#prefix - this.#above.reduce((n, [a, b]) => n + b - a, 0);
  }

  /** New durable records holding `messages`. */
  added(messages: number): void {
    this.#messages += messages;
  }

  /** Marks record `seq` (holding `messages`) done; false when it was done already. */
  confirm(seq: number, messages: number): boolean {
    if (seq < this.#prefix) return false;
    const ranges = this.#above;
    let i = ranges.length - 1;
    while (i >= 0 && ranges[i]![0] > seq) i--;
    const at = ranges[i];
    if (at && seq < at[1]) return false;
    this.#messages = Math.max(0, this.#messages - messages);
    if (at && at[1] === seq) at[1] = seq + 1;
    else ranges.splice(i + 1, 0, [seq, seq + 1]);
    const j = at && at[1] === seq + 1 ? i : i + 1;
    const cur = ranges[j]!;
    const nxt = ranges[j + 1];
    if (nxt && nxt[0] === cur[1]) {
      cur[1] = nxt[1];
      ranges.splice(j + 1, 1);
    }
    this.#mergePrefix();
    return true;
  }

  /**
   * Counts every record of `segment` as done (it is being dropped); returns what of it was not done yet, or
   * undefined when all of it was.
   */
  drop(segment: Segment): { records: number; messages: number } | undefined {
    const end = segment.first + segment.records;
    if (end <= this.#prefix) return undefined;
    const from = Math.max(segment.first, this.#prefix);
    const messages =
      from === segment.first
        ? segment.messages
        : scanSegment(segment.path, { verify: false, countFrom: from }).messagesFrom;
    let records = end - from;
    for (const [a, b] of this.#above) records -= Math.max(0, Math.min(b, end) - Math.max(a, from));
    this.#messages = Math.max(0, this.#messages - messages);
    this.#advanceTo(end);
    return { records, messages };
  }

  #advanceTo(seq: number): void {
    if (seq <= this.#prefix) return;
    this.#prefix = seq;
    this.#above = this.#above.filter(([, b]) => b > seq).map(([a, b]) => [Math.max(a, seq), b]);
    this.#mergePrefix();
  }

  #mergePrefix(): void {
    while (this.#above[0] && this.#above[0][0] <= this.#prefix) {
      this.#prefix = Math.max(this.#prefix, this.#above.shift()![1]);
    }
  }
}
