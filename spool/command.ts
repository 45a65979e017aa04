import { existsSync, statSync } from "node:fs";
import { type CliCommand, defineCommand, defineGroup } from "../common/command.js";
import { parsers, setting } from "../common/config.js";
import { readTrailer, scanSegment } from "./segments.js";
import { listSegments, readCursor } from "./store.js";

/** One segment as the offline commands see it. */
interface SegmentReport {
  readonly file: string;
  readonly firstSeq: number;
  readonly records: number;
  readonly readings: number;
  readonly bytes: number;
  readonly sealed: boolean;
  readonly firstAppendedAt: number | undefined;
  readonly problem: string | undefined;
  /** Damaged stretches (verify): each costs its records, `readings` of them when known. */
  readonly damage: readonly DamageReport[];
}

interface DamageReport {
  readonly offset: number;
  readonly fromSeq: number;
  readonly toSeq: number;
  readonly readings: number | undefined;
  readonly why: string;
}

interface SpoolReport {
  readonly path: string;
  readonly segments: readonly SegmentReport[];
  /** The first seq not yet confirmed, from the cursor file (undefined: none written yet). */
  readonly cursor: number | undefined;
  readonly depth: { readonly records: number; readonly readings: number; readonly bytes: number };
  readonly oldest: string | undefined;
}

/**
 * Reads a spool directory without changing it (a torn tail is reported, not cut): sealed segments by their
 * trailers unless `verify`, the newest by a scan; `verify` checks every record's CRC in every segment.
 */
function readSpool(path: string, verify: boolean): SpoolReport {
  const cursor = readCursor(path);
  const files = listSegments(path);
  const segments: SegmentReport[] = files.map((f, i) => {
    const trailer = verify || i === files.length - 1 ? undefined : readTrailer(f.path);
    const bytes = statSync(f.path).size;
    if (trailer) {
      return {
        file: f.path,
        firstSeq: f.first,
        records: trailer.records,
        readings: trailer.messages,
        bytes,
        sealed: true,
        firstAppendedAt: trailer.records ? trailer.firstAppendedAt : undefined,
        problem: undefined,
        damage: [],
      };
    }
    const scan = scanSegment(f.path, { verify, countFrom: cursor ?? 0 });
    const problem =
      scan.firstSeq !== f.first
        ? "segment header torn or foreign"
        : scan.problem && !(scan.trailer && scan.goodBytes + 48 === scan.fileBytes)
          ? scan.problem
          : undefined;
    return {
      file: f.path,
      firstSeq: f.first,
      records: scan.summary.records,
      readings: scan.summary.messages,
      bytes,
      sealed: scan.trailer !== undefined,
      firstAppendedAt: scan.summary.records ? scan.summary.firstAppendedAt : undefined,
      problem,
      damage: [...scan.damage, ...(scan.tail ? [scan.tail] : [])].map((d) => ({
        offset: d.offset,
        fromSeq: d.fromSeq,
        toSeq: d.toSeq,
        readings: d.messages,
        why: d.why,
      })),
    };
  });
  const from = cursor ?? 0;
  let records = 0;
  let readings = 0;
  let bytes = 0;
  let oldest: number | undefined;
  for (const s of segments) {
    bytes += s.bytes;
    const end = s.firstSeq + s.records;
    if (end <= from) continue;
    oldest ??= s.firstAppendedAt;
    records += end - Math.max(from, s.firstSeq);
    readings +=
      s.firstSeq >= from ? s.readings : scanSegment(s.file, { verify: false, countFrom: from }).messagesFrom;
  }
  return {
    path,
    segments,
    cursor,
    depth: { records, readings, bytes },
    oldest: oldest === undefined ? undefined : new Date(oldest).toISOString(),
  };
}

const spec = {
  spoolPath: setting<string | undefined>({
    flag: "spool-path",
    env: "SPOOL_PATH",
    default: undefined,
    defaultLabel: "FILE, else SPOOL_PATH",
    description: "The gateway's spool directory (the FILE argument gives it too).",
    parse: parsers.string({ min: 1, max: 4_096 }),
  }),
  format: setting({
    flag: "format",
    default: "text" as "text" | "json",
    description: "text for people, json for scripts.",
    parse: parsers.oneOf("text", "json"),
  }),
};

function checkPath(command: string, path: string | undefined): string | undefined {
  if (!path) return `telemetry spool ${command}: name the spool directory (FILE or SPOOL_PATH)`;
  if (!existsSync(path) || !statSync(path).isDirectory()) {
    return `telemetry spool ${command}: ${path} is not a spool directory`;
  }
  return undefined;
}

const MIB = 1_048_576;

const inspectCommand = defineCommand({
  name: "spool inspect",
  usage: "telemetry spool inspect [FILE] [--format text|json]",
  summary:
    "Reads a gateway's spool directory offline, changing nothing: depth in records, readings and bytes, the oldest\n" +
    "unconfirmed record, and each segment. Exit 0, or 1 when the directory cannot be read.",
  spec,
  run: async (config) => {
    const bad = checkPath("inspect", config.spoolPath);
    if (bad) {
      process.stderr.write(`${bad}\n`);
      return 1;
    }
    const r = readSpool(config.spoolPath!, false);
    if (config.format === "json") {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return 0;
    }
    const lines = [
      `spool ${r.path}`,
      `  depth: ${r.depth.records} records, ${r.depth.readings} readings, ${(r.depth.bytes / MIB).toFixed(1)} MiB on disk in ${r.segments.length} segments`,
      `  oldest unconfirmed: ${r.oldest ?? "none"}`,
      `  cursor (first unconfirmed seq): ${r.cursor ?? "none yet"}`,
      ...r.segments.map(
        (s) =>
          `  ${s.file}: seq ${s.firstSeq}.., ${s.records} records, ${s.readings} readings, ${s.bytes} bytes${s.sealed ? ", sealed" : ""}${s.problem ? `, ${s.problem} (cut at the gateway's next start)` : ""}`,
      ),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    return 0;
  },
});

const verifyCommand = defineCommand({
  name: "spool verify",
  usage: "telemetry spool verify [FILE] [--format text|json]",
  summary:
    "Checks every record's CRC, length and sequence in every segment of a spool directory, offline. Exit 0 when\n" +
    "all are intact; 1 when one is not, with one line per damaged stretch: segment, byte offset, records and readings\n" +
    "lost (the gateway skips a damaged record and goes on at the next intact one; a torn tail is cut at its start).",
  spec,
  run: async (config) => {
    const bad = checkPath("verify", config.spoolPath);
    if (bad) {
      process.stderr.write(`${bad}\n`);
      return 1;
    }
    const r = readSpool(config.spoolPath!, true);
    const damaged = r.segments.filter((s) => s.problem || s.damage.length > 0);
    const records = r.segments.reduce((n, s) => n + s.records, 0);
    if (config.format === "json") {
      process.stdout.write(
        `${JSON.stringify({ ok: damaged.length === 0, records, segments: r.segments }, null, 2)}\n`,
      );
    } else if (damaged.length === 0) {
      process.stdout.write(
        `spool ok: ${records} records in ${r.segments.length} segments, every CRC intact\n`,
      );
    } else {
      for (const s of damaged) {
        for (const d of s.damage) {
          const lost = d.readings === undefined ? "readings unknown" : `${d.readings} readings lost`;
          process.stderr.write(
            d.toSeq > d.fromSeq
              ? `${s.file}: byte ${d.offset}: records ${d.fromSeq}..${d.toSeq - 1} damaged (${d.why}); ${lost}\n`
              : `${s.file}: byte ${d.offset}: ${d.why} (a torn tail holding no whole record header; nothing lost)\n`,
          );
        }
        if (s.damage.length === 0) process.stderr.write(`${s.file}: ${s.problem}\n`);
      }
      const lost = damaged.flatMap((s) => s.damage);
      const readings = lost.reduce((n, d) => n + (d.readings ?? 0), 0);
      const lostRecords = lost.reduce((n, d) => n + d.toSeq - d.fromSeq, 0);
      process.stderr.write(
        `spool damaged: ${damaged.length} of ${r.segments.length} segments; ${lostRecords} records, ${readings} readings lost (the gateway skips them, counted as corrupt)\n`,
      );
    }
    return damaged.length === 0 ? 0 : 1;
  },
});

/** A leading FILE argument stands for `--spool-path FILE`. */
function withFileArgument(c: CliCommand): CliCommand {
  const rewrite = (argv: readonly string[]) =>
    argv[0] !== undefined && !argv[0].startsWith("-") ? ["--spool-path", ...argv] : argv;
  return {
    ...c,
    execute: (argv, env) => c.execute(rewrite(argv), env),
    ...(c.validate ? { validate: (argv, env) => c.validate!(rewrite(argv), env) } : {}),
  };
}

/** `telemetry spool inspect|verify [FILE]`: a gateway's spool read offline. */
export const spoolCommand = defineGroup({
  name: "spool",
  summary:
    "A gateway's store-and-forward spool read offline: depth and oldest (inspect), integrity (verify).",
  commands: [withFileArgument(inspectCommand), withFileArgument(verifyCommand)],
});
