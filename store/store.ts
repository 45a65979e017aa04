import type { Running } from "../common/pipeline.js";
import type { Reading } from "../schemas/index.js";
import type { TierTable } from "./tiers.js";

/** A reading whose key is already stored with another measurement: the stored row is kept, this one is not. */
export interface Conflict {
  /** Position of the conflicting reading in the batch given to `writeBatch`. */
  readonly index: number;
  /** Both measurements, for the operator: `conflicting reading for dev/sensor at ...: stored value 20.5; this one value 99.9`. */
  readonly reason: string;
}

/**
 * What a committed batch did: rows added; readings already stored with the same measurement (redeliveries,
 * resends); readings whose key is stored with another measurement (conflicts, kept out of the table).
 */
export interface WriteResult {
  readonly inserted: number;
  readonly duplicates: number;
  readonly conflicts: readonly Conflict[];
  /**
   * Readings refused because their `ts` is below what retention has already deleted (the `readings` horizon,
   * store/tiers.ts): their row may have been stored, counted in the tiers and deleted, so storing them again
   * could count them twice. Nothing of them is stored.
   */
  readonly expired: number;
  /** The `readings` horizon (epoch ms) the expired readings were below, for the operator's log; set when `expired > 0`. */
  readonly horizon?: number;
}

/**
 * The processor's store: `writeBatch` writes a batch in one transaction and resolves only once it has committed
 * durably; a rejection means nothing of the batch was stored. One row per (device_id, sensor, ts): the first
 * reading of a key wins. SQLite (`store/sqlite.ts`) today; PostgreSQL is another implementation of this interface.
 */
export interface ReadingStore extends Running {
  writeBatch(readings: readonly Reading[]): Promise<WriteResult>;
  /**
   * Retention: deletes at most `limit` readings whose `ts` is before `cutoff` (epoch ms UTC, exclusive) in one
   * transaction that also corrects the store's rollups (a series' first_ts and count; a series left without rows
   * disappears), and resolves with how many it deleted once that has committed. Fewer than `limit` means none older
   * than `cutoff` is left. A rejection means nothing was deleted. The caller keeps `limit` small (thousands) so each
   * transaction is short and batch writes interleave with a long deletion. It raises the `readings` horizon to
   * `cutoff`. PostgreSQL drops whole day partitions instead (those ending at or before `cutoff`, which may hold
   * more than `limit` rows), after raising the horizon in a short transaction of its own, so that no writer waits
   * while the rows of the days are counted.
   */
  deleteOlderThan(cutoff: number, limit: number): Promise<number>;
  /**
   * A tier's retention (`RETENTION_1M`, `RETENTION_1H`, `RETENTION_1D`): deletes at most `limit` rows of `table`
   * whose `start` is before `cutoff` and raises the tier's horizon to `cutoff` (SQLite in the same transaction,
   * PostgreSQL in one of its own just before), so a late reading never re-creates part of a bucket already deleted. Resolves with how many rows it deleted once committed;
   * fewer than `limit` means none is left. The retention loop passes a bucket boundary; SQLite raises the horizon to
   * `cutoff` rounded up to one, the end of the last bucket it may delete, whatever it is given.
   */
  deleteTierOlderThan(table: TierTable, cutoff: number, limit: number): Promise<number>;
}
