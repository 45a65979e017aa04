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
  if (n === 0) return { n, p50: 0, p95: 0, p99: 0, max: 0 };
  values.sort();
  const at = (p: number) => values[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))] ?? 0;
  return { n, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: values[n - 1] ?? 0 };
}

/** Commits per time bin, from (commit time, rows) pairs: the shape of a run. */
export interface Timeline {
  /** Epoch ms of the first and last commit. */
  readonly first: number;
  readonly last: number;
  /** Rows committed in each second from `first`. */
  readonly perSecond: number[];
}

export function timeline(commits: readonly { readonly t: number; readonly n: number }[]): Timeline {
  if (commits.length === 0) return { first: 0, last: 0, perSecond: [] };
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  for (const c of commits) {
    if (c.t < first) first = c.t;
    if (c.t > last) last = c.t;
  }
  const perSecond = new Array<number>(Math.floor((last - first) / 1_000) + 1).fill(0);
  for (const c of commits) {
    const i = Math.floor((c.t - first) / 1_000);
    perSecond[i] = (perSecond[i] ?? 0) + c.n;
  }
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
  commits: readonly { readonly t: number; readonly n: number }[],
  from: number,
  to: number,
  warmup = 0.1,
  cooldown = 0.05,
): SteadyRate {
  const span = Math.max(1, to - from);
  const a = from + span * warmup;
  const b = to - span * cooldown;
  let rows = 0;
  for (const c of commits) if (c.t >= a && c.t < b) rows += c.n;
  const seconds = Math.max(0.001, (b - a) / 1_000);
  return { perSecond: Math.round(rows / seconds), from: a, to: b, seconds: round(seconds, 2), rows };
}

export function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Splits `n` readings over `keys` round-robin: how many key `j` gets. */
export function readingsOfKey(n: number, keys: number, j: number): number {
  return Math.floor(n / keys) + (j < n % keys ? 1 : 0);
}
