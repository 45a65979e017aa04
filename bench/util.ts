/**
 * Small helpers every part of the benchmark shares: progress lines, number formats, waiting with a stall check,
 * RabbitMQ clean-up, percentiles and steady windows, text and markdown tables.
 */
import amqp from "amqplib";
import { queueNames } from "../amqp/topology.js";

/** A progress line on stderr (the report goes to stdout). */
export function say(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

/** A whole number with thousands separators. */
export const fmt = (x: number): string => Math.round(x).toLocaleString("en-US");

export function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Median; 0 for no values. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length === 0 ? 0 : s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` every `pollMs` until it returns true. `progress` (when given) is what should keep moving: if it
 * has not changed for `stallMs`, rejects naming `what`; without it, rejects after `stallMs` in all.
 */
export async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  o: { pollMs?: number; stallMs?: number; progress?: () => number } = {},
): Promise<void> {
  const { pollMs = 100, stallMs = 600_000, progress } = o;
  let last = progress?.();
  let since = Date.now();
  while (!(await check())) {
    const now = progress?.();
    if (now !== last) [last, since] = [now, Date.now()];
    else if (Date.now() - since > stallMs)
      throw new Error(
        `${what}: no progress for ${stallMs / 1_000} s${now === undefined ? "" : ` (at ${now})`}`,
      );
    await sleep(pollMs);
  }
}

/**
 * Deletes queues (or, given one name, the contract's three queues of it), ignoring those already gone. Clean-up:
 * never throws; a failure is said on stderr.
 */
export async function deleteQueues(url: string, queues: string | readonly string[]): Promise<void> {
  try {
    const conn = await amqp.connect(url);
    conn.on("error", () => undefined);
    try {
      for (const q of typeof queues === "string" ? Object.values(queueNames(queues)) : queues) {
        const ch = await conn.createChannel();
        ch.on("error", () => undefined);
        await ch.deleteQueue(q).catch(() => undefined);
        await ch.close().catch(() => undefined);
      }
    } finally {
      await conn.close().catch(() => undefined);
    }
  } catch (err) {
    say(`could not delete the queues ${String(queues)}: ${String(err)}`);
  }
}

/** p50, p95, p99 and max of a sample, in its unit; zeros for an empty sample. */
export interface Percentiles {
  readonly n: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

/** Nearest-rank percentiles. Sorts `values` in place. */
export function percentiles(values: Float64Array): Percentiles {
  const n = values.length;
  values.sort();
  const at = (p: number) => values[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))] ?? 0;
  return { n, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: values[n - 1] ?? 0 };
}

/** A commit time (epoch ms) and the rows it committed. */
export type Commit = { readonly t: number; readonly n: number };

/** Commits per time bin: the shape of a run. */
export interface Timeline {
  /** Epoch ms of the first and last commit. */
  readonly first: number;
  readonly last: number;
  /** Rows committed in each second from `first`. */
  readonly perSecond: number[];
}

export function timeline(commits: readonly Commit[]): Timeline {
  if (commits.length === 0) return { first: 0, last: 0, perSecond: [] };
  const first = commits.reduce((m, c) => Math.min(m, c.t), Number.POSITIVE_INFINITY);
  const last = commits.reduce((m, c) => Math.max(m, c.t), 0);
  const perSecond = new Array<number>(Math.floor((last - first) / 1_000) + 1).fill(0);
  for (const c of commits) perSecond[Math.floor((c.t - first) / 1_000)]! += c.n;
  return { first, last, perSecond };
}

export interface SteadyRate {
  /** Rows a second committed inside the window. */
  readonly perSecond: number;
  /** Window, epoch ms, and its length in s. */
  readonly from: number;
  readonly to: number;
  readonly seconds: number;
  readonly rows: number;
}

/**
 * Rows a second in the steady part of a run: commits between `from` and `to` (epoch ms) after dropping the first
 * `warmup` and last `cooldown` shares of that span (start-up, JIT warm-up, the tail of the last batches).
 */
export function steadyRate(
  commits: readonly Commit[],
  from: number,
  to: number,
  warmup = 0.1,
  cooldown = 0.05,
): SteadyRate {
  const span = Math.max(1, to - from);
  const a = from + span * warmup;
  const b = to - span * cooldown;
  const rows = commits.reduce((sum, c) => (c.t >= a && c.t < b ? sum + c.n : sum), 0);
  const seconds = Math.max(0.001, (b - a) / 1_000);
  return { perSecond: Math.round(rows / seconds), from: a, to: b, seconds: round(seconds, 2), rows };
}

/** Splits `n` readings over `keys` round-robin: how many key `j` gets. */
export function readingsOfKey(n: number, keys: number, j: number): number {
  return Math.floor(n / keys) + (j < n % keys ? 1 : 0);
}

/** A plain-text table, columns padded; `align` "r" right-aligns a column. */
export function table(rows: readonly (readonly string[])[], align: readonly ("l" | "r")[]): string {
  const widths = align.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const pad = (cell: string, c: number) =>
    align[c] === "r" ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0);
  return rows.map((r) => r.map(pad).join("  ").trimEnd()).join("\n");
}

/** A markdown table; a column whose header starts with ">" is right-aligned (the ">" is dropped). */
export function markdownTable(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const right = head.map((h) => h.startsWith(">"));
  return [
    `| ${head.map((h) => h.replace(/^>/, "")).join(" | ")} |`,
    `| ${right.map((r) => (r ? "---:" : "---")).join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ];
}
