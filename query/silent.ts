/**
 * Silent devices (docs/contract.md, "Contract: rollups, retention and devices"): a device is silent when nothing
 * came from it for more than three of its usual intervals and at least `SILENT_MIN`. The one rule, used by
 * `query devices`, `/api/devices`, `telemetry status` and the processor's gauge.
 */

/** `SILENT_MIN`'s default, ms. */
export const SILENT_MIN_MS = 60_000;

/** Intervals of nothing after which a device counts as silent (when that is longer than `SILENT_MIN`). */
export const SILENT_INTERVALS = 3;

/** What the rule needs of a device: when it was last seen and its usual interval (null: not known yet). */
export interface Seen {
  readonly last_seen: number;
  readonly interval_ms: number | null;
}

/** Whether a device last seen as `d` says is silent at `now`, given `SILENT_MIN` as `silentMin` (all ms). */
export function isSilent(d: Seen, now: number, silentMin: number): boolean {
  return now - d.last_seen > Math.max(SILENT_INTERVALS * (d.interval_ms ?? 0), silentMin);
}

/**
 * The moment serve judges silence at: `now` rounded down to a tenth of `SILENT_MIN`, so an answer can be kept and
 * handed out again within that tenth (serve's answer cache) while a device is never marked silent early, and late
 * by at most a tenth of `SILENT_MIN`.
 */
export function silenceClock(now: number, silentMin: number): number {
  const tick = Math.max(1, Math.floor(silentMin / 10));
  return now - (now % tick);
}
