/**
 * serve's answer cache: whole answers kept by (question, format, store version), so a dashboard polling a store
 * that has not changed costs a read of the version and no query, and a changed store costs one query. The key
 * holds the version the question was asked under and the answer was read after that version was, so a kept
 * answer is never older than the store at the time it is handed out again. Bounded in bytes; the least recently
 * used answers go first (entries of older versions are never asked for again, so they age out).
 */
import { createHash } from "node:crypto";

/** The cache's size: a `latest` of 4,000 series is about 600 KB of json. */
export const CACHE_BYTES = 32 * 1_048_576;
/** An answer larger than this is sent but not kept: one export must not push out everything else. */
export const ENTRY_BYTES = CACHE_BYTES / 8;

export class AnswerCache {
  readonly #entries = new Map<string, Uint8Array>();
  #bytes = 0;

  constructor(private readonly maxBytes = CACHE_BYTES) {}

  /** The entity tag of an answer: a digest of its key, so the same question of the same store has the same tag. */
  static etag(key: string): string {
    return `"${createHash("sha1").update(key).digest("base64url")}"`;
  }

  get(key: string): Uint8Array | undefined {
    const body = this.#entries.get(key);
    if (body !== undefined) {
      // Most recently used last: Map keeps insertion order.
      this.#entries.delete(key);
      this.#entries.set(key, body);
    }
    return body;
  }

  set(key: string, body: Uint8Array): void {
    if (body.length > Math.min(ENTRY_BYTES, this.maxBytes) || this.#entries.has(key)) return;
    this.#entries.set(key, body);
    this.#bytes += body.length;
    for (const [oldest, kept] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= kept.length;
    }
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }
}
