/**
 * `telemetry query devices|latest|readings|stats`: the analysts' queries on the command line (docs/contract.md,
 * "Queries"). Output goes to stdout as it is read; a bad option is one line on stderr and exit 2,
 * an unknown device or sensor an empty answer and exit 0.
 */
import { type CliCommand, defineCommand, defineGroup } from "../common/command.js";
import type { ConfigOf, Spec } from "../common/config.js";
import { common } from "../common/settings.js";
import { openQueries } from "../store/index.js";
import type { ReadingQueries } from "../store/queries.js";
import { devicesAnswer, latestAnswer, readingsAnswer, statsAnswer } from "./answers.js";
import { type Answer, type Format, render, writeTo } from "./format.js";
import { bucketProblem, maxBuckets, params, questionProblem, questions, statsBuckets } from "./params.js";

const TIME_HELP =
  "Times: ISO-8601 with offset (2026-01-31T12:00:00Z), a UTC date (2026-01-31), epoch ms, now, or relative\n" +
  "(-15m, -24h, -7d); --from is inclusive, --to exclusive. Output: a table on a terminal, else json.";

/** Opens the store, renders the answer to stdout, closes; a store that cannot be opened is one line and exit 1. */
async function answerWith(
  name: string,
  config: { readonly dbPath: string; readonly databaseUrl?: string | undefined; readonly format: Format },
  ask: (q: ReadingQueries) => Answer | Promise<Answer>,
): Promise<number> {
  let queries: ReadingQueries;
  try {
    queries = await openQueries(config);
  } catch (err) {
    process.stderr.write(`telemetry query ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  try {
    await writeTo(render(await ask(queries), config.format), process.stdout);
    return 0;
  } finally {
    await queries.stop();
  }
}

function subcommand<S extends Spec & { dbPath: typeof common.dbPath; format: typeof params.format }>(c: {
  name: keyof typeof questions;
  usage: string;
  summary: string;
  spec: S;
  ask: (q: ReadingQueries, config: ConfigOf<S>) => Answer | Promise<Answer>;
  /** A problem of this question beyond its required parameters and range. */
  check?: (config: ConfigOf<S>) => string | undefined;
}): CliCommand {
  const { required } = questions[c.name];
  return defineCommand({
    name: `query ${c.name}`,
    usage: c.usage,
    summary: c.summary,
    spec: c.spec,
    extraHelp: TIME_HELP,
    check: (config) =>
      questionProblem(required, config as Record<string, unknown>, (k) => `--${k}`) ?? c.check?.(config),
    run: (config) =>
      answerWith(c.name, config as { dbPath: string; databaseUrl?: string; format: Format }, (q) =>
        c.ask(q, config),
      ),
  });
}

const store = { dbPath: common.dbPath, databaseUrl: common.databaseUrl } as const;

export const queryCommand = defineGroup({
  name: "query",
  summary: "Analysts' queries over the store: devices, latest values, readings, time-bucketed stats.",
  commands: [
    subcommand({
      name: "devices",
      usage:
        "telemetry query devices [--limit N] [--after DEVICE] [--match PREFIX] [--silent-min D] [--format F]",
      summary:
        "Each device, when it was last seen, its usual interval and whether it is silent, with its sensors: unit,\n" +
        "first and last time, last value and count (on PostgreSQL counting reads every row). Pages in device order.",
      spec: { ...store, ...questions.devices.spec, silentMin: params.silentMin, format: params.format },
      ask: (q, c) => devicesAnswer(q, c, { min: c.silentMin, at: Date.now() }),
    }),
    subcommand({
      name: "latest",
      usage: "telemetry query latest [--device D] [--limit N] [--after DEVICE] [--match PREFIX] [--format F]",
      summary:
        "The newest reading of every series (of one device with --device); pages of devices in device order.",
      spec: { ...store, ...questions.latest.spec, format: params.format },
      ask: (q, c) => latestAnswer(q, c, c.device),
    }),
    subcommand({
      name: "readings",
      usage:
        "telemetry query readings --device D [--sensor S] [--from T] [--to T] [--limit N] [--order asc|desc] [--format F]",
      summary: "A device's readings in time order (every sensor, or one), streamed.",
      spec: { ...store, ...questions.readings.spec, format: params.format },
      ask: (q, c) => readingsAnswer(q, { ...c, device: c.device ?? "" }),
    }),
    subcommand({
      name: "stats",
      usage:
        "telemetry query stats --device D [--sensor S] --every 1m|5m|15m|1h|1d [--from T] [--to T] [--fill none|null|prev|linear] [--max-buckets N] [--format F]",
      summary:
        "Per sensor and time bucket: start, count, min, max, mean, last; empty buckets filled with --fill.",
      spec: { ...store, ...questions.stats.spec, format: params.format, maxBuckets },
      ask: (q, c) => statsAnswer(q, { ...c, device: c.device ?? "", every: c.every ?? 0 }),
      check: (c) =>
        bucketProblem(statsBuckets({ ...c, every: c.every ?? 1 }, Date.now()), c.maxBuckets, "--max-buckets"),
    }),
  ],
});
