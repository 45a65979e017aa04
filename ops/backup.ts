import { existsSync, rmSync, statSync } from "node:fs";
import { defineCommand } from "../common/command.js";
import { common } from "../common/settings.js";
import { backupDatabase } from "../store/status.js";

/** Least time between two progress lines on stderr. */
const PROGRESS_EVERY_MS = 500;
const MIB = 1_048_576;

/**
 * `telemetry backup FILE`: a consistent online copy of the SQLite database while the processor writes, with
 * progress on stderr. Exit 0 once the copy is complete, 1 when it could not be made (nothing is left half-written
 * under FILE's name by SQLite's backup: a failed copy is removed).
 */
export const backupCommand = defineCommand({
  name: "backup",
  usage: "telemetry backup FILE [options]",
  summary:
    "Consistent online copy of the SQLite database into FILE (a new file) while the processor writes, with " +
    "progress on stderr; the copy holds every row committed before the backup began.",
  args: ["FILE"],
  spec: { dbPath: common.dbPath },
  run: async (config, [file]) => {
    const target = file as string;
    const existed = existsSync(target);
    let last = 0;
    const started = Date.now();
    try {
      const { pages, restarts, rows } = await backupDatabase(config.dbPath, target, (p) => {
        const now = Date.now();
        if (now - last < PROGRESS_EVERY_MS) return;
        last = now;
        const done = p.totalPages - p.remainingPages;
        const pct = p.totalPages ? Math.floor((100 * done) / p.totalPages) : 100;
        process.stderr.write(`backup: ${pct}% (${done} of ${p.totalPages} pages)\n`);
      });
      process.stderr.write(
        `backup: 100% (${pages} pages, ${(statSync(target).size / MIB).toFixed(1)} MiB, ${rows} rows, quick check ok) ` +
          `in ${Date.now() - started} ms` +
          `${restarts ? `, restarted ${restarts} times by concurrent writes` : ""}; written to ${target}\n`,
      );
      return 0;
    } catch (err) {
      if (!existed) rmSync(target, { force: true });
      process.stderr.write(`telemetry backup: ${(err as Error).message}\n`);
      return 1;
    }
  },
});
