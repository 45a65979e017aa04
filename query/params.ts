/**
 * The parameters of the analysts' queries, defined once: the `query` command takes them as flags
 * (`--device D`), `serve` as URL parameters of the same names (`?device=D`), parsed by the same functions.
 */
import { parsers, setting } from "../common/config.js";
import { idParser as id } from "../common/settings.js";
import { FILLS, type Fill } from "./fill.js";
import { FORMATS, type Format } from "./format.js";
import { SILENT_MIN_MS } from "./silent.js";
import { parseBucket, parseTime, rangeProblem } from "./time.js";

/** Enough for any chart: a point per pixel of a wide screen, several times over. */
const MAX_POINTS = 100_000;

export const params = {
  device: setting({
    flag: "device",
    default: undefined as string | undefined,
    defaultLabel: "none",
    description: "Device id.",
    parse: id,
  }),
  sensor: setting({
    flag: "sensor",
    default: undefined as string | undefined,
    defaultLabel: "every sensor of the device",
    description: "Sensor name.",
    parse: id,
  }),
  from: setting({
    flag: "from",
    default: undefined as number | undefined,
    defaultLabel: "all time",
    description:
      "Start, inclusive: ISO-8601 with offset (2026-01-31T12:00:00Z), a UTC date, epoch ms, now, or relative (-15m, -24h, -7d).",
    parse: (raw) => parseTime(raw, Date.now()),
  }),
  to: setting({
    flag: "to",
    default: undefined as number | undefined,
    defaultLabel: "all time",
    description: "End, exclusive; written like --from.",
    parse: (raw) => parseTime(raw, Date.now()),
  }),
  limit: setting({
    flag: "limit",
    default: undefined as number | undefined,
    defaultLabel: "no limit",
    description: "At most this many readings.",
    parse: parsers.int(0, Number.MAX_SAFE_INTEGER),
  }),
  deviceLimit: setting({
    flag: "limit",
    default: undefined as number | undefined,
    defaultLabel: "no limit",
    description: "At most this many devices (latest: every series of each); the rest follow with --after.",
    parse: parsers.int(1, Number.MAX_SAFE_INTEGER),
  }),
  after: setting({
    flag: "after",
    default: undefined as string | undefined,
    defaultLabel: "from the first device",
    description: "Only devices after this id in device order: the last device of the page before.",
    parse: id,
  }),
  match: setting({
    flag: "match",
    default: undefined as string | undefined,
    defaultLabel: "every device",
    description: "Only devices whose id starts with this prefix.",
    parse: id,
  }),
  silentMin: setting({
    flag: "silent-min",
    env: "SILENT_MIN",
    default: SILENT_MIN_MS,
    description:
      "A device is silent when nothing came for more than three of its usual intervals and at least this long.",
    parse: parsers.duration(1, 365 * 86_400_000),
  }),
  order: setting({
    flag: "order",
    default: "asc" as "asc" | "desc",
    description: "By time: asc (oldest first) or desc (newest first).",
    parse: parsers.oneOf("asc", "desc"),
  }),
  every: setting({
    flag: "every",
    default: undefined as number | undefined,
    defaultLabel: "none (required)",
    description:
      "Bucket width: 1m, 5m, 15m, 1h, 1d (minutes, hours or days dividing a day); buckets align to UTC.",
    parse: parseBucket,
  }),
  fill: setting({
    flag: "fill",
    default: "none" as Fill,
    description:
      "Buckets without readings: none (left out), null (count 0, null values), prev (the previous bucket's values), linear (interpolated).",
    parse: parsers.oneOf(...FILLS),
  }),
  points: setting({
    flag: "points",
    default: undefined as number | undefined,
    defaultLabel: "none (required)",
    description: `At most about this many chart points (2 to ${MAX_POINTS.toLocaleString("en-US")}).`,
    parse: parsers.int(2, MAX_POINTS),
  }),
  format: setting({
    flag: "format",
    default: () => (process.stdout.isTTY ? "table" : "json") as Format,
    defaultLabel: "table on a terminal, else json",
    description: "Output: table, csv (with a header row), json (an array) or ndjson (one object a line).",
    parse: parsers.oneOf(...FORMATS),
  }),
} as const;

/**
 * Each question's parameters, declared once: the `query` subcommands take them as flags, `serve`'s endpoints as
 * URL parameters; `required` are those without which the question is a bad one.
 */
export const questions = {
  devices: {
    spec: { limit: params.deviceLimit, after: params.after, match: params.match },
    required: [],
  },
  latest: {
    spec: { device: params.device, limit: params.deviceLimit, after: params.after, match: params.match },
    required: [],
  },
  readings: {
    spec: {
      device: params.device,
      sensor: params.sensor,
      from: params.from,
      to: params.to,
      limit: params.limit,
      order: params.order,
    },
    required: ["device"],
  },
  stats: {
    spec: {
      device: params.device,
      sensor: params.sensor,
      every: params.every,
      from: params.from,
      to: params.to,
      fill: params.fill,
    },
    required: ["device", "every"],
  },
  series: {
    spec: {
      device: params.device,
      sensor: params.sensor,
      from: params.from,
      to: params.to,
      points: params.points,
    },
    required: ["device", "sensor", "points"],
  },
} as const;

/** What is wrong with a question's parameters, in one line (`name` as the parameter is written), or undefined. */
export function questionProblem(
  required: readonly string[],
  values: Readonly<Record<string, unknown>>,
  name: (key: string) => string,
): string | undefined {
  const missing = required.find((k) => values[k] === undefined);
  if (missing !== undefined) return `${name(missing)} is required`;
  return rangeProblem(values.from as number | undefined, values.to as number | undefined);
}

/** The default of `--max-buckets` and `SERVE_MAX_BUCKETS`: far more than a chart or a spreadsheet needs. */
export const MAX_BUCKETS = 100_000;

/** `--max-buckets` of `query stats` (serve's `SERVE_MAX_BUCKETS` is declared by serve, with the same parser). */
export const maxBuckets = setting({
  flag: "max-buckets",
  default: MAX_BUCKETS,
  description: "Refuse a stats question whose range holds more buckets than this, per series.",
  parse: parsers.int(1, 100_000_000),
});

/**
 * How many buckets a `stats` question asks for, per series: the buckets of width `every` from the one holding
 * `from` to the one holding `to - 1` (`to` unset: now). Without `from` the range starts at each series' first
 * reading, which the question does not say: 0 (not counted; the query timeout bounds it).
 */
export function statsBuckets(
  q: { from?: number | undefined; to?: number | undefined; every: number },
  now: number,
): number {
  if (q.from === undefined) return 0;
  const to = q.to ?? now;
  if (to <= q.from) return 0;
  return Math.floor((to - 1) / q.every) - Math.floor(q.from / q.every) + 1;
}

/**
 * The one-line refusal of a question of `buckets` buckets when that is over `limit`, naming the limit as the caller
 * spells it (`--max-buckets`, `SERVE_MAX_BUCKETS`), or undefined.
 */
export function bucketProblem(buckets: number, limit: number, limitName: string): string | undefined {
  if (buckets <= limit) return undefined;
  const n = (x: number) => x.toLocaleString("en-US");
  return `the question asks for ${n(buckets)} buckets, more than the limit of ${n(limit)} (${limitName}): ask a shorter range or wider buckets`;
}
