import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { bytesParser } from "./bytes.js";

/** A setting the user got wrong: the CLI prints `message` on one line and exits with code 2. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/**
 * How a setting's value is shown wherever it is printed (`--help`, errors, effective configuration):
 * `false` as it is, `true` as `***`, `"url"` with the password of each URL replaced by `***`.
 */
export type Secrecy = boolean | "url";

/** One setting of a command: where it comes from (flag, environment variable, default) and how it is parsed. */
export interface Setting<T> {
  /** Long flag without the leading dashes, e.g. `mqtt-url`. */
  readonly flag: string;
  /** Environment variable read when the flag is absent; `<env>_FILE` names a file holding the value instead. */
  readonly env?: string;
  /** Value when neither flag nor variable is given; a function is called once, at parse time. */
  readonly default: T | (() => T);
  /** Shown in `--help` and README's configuration table. */
  readonly description: string;
  /** What `--help` prints as the default when it is computed. */
  readonly defaultLabel?: string;
  /** Turns the raw text into a value or throws an Error whose message says what is allowed. */
  readonly parse: (raw: string) => T;
  /** A flag without a value (`--faults`), true when present. */
  readonly boolean?: boolean;
  /** Overrides {@link secrecyOf}'s rule by name, for a secret whose variable's name does not say so. */
  readonly secret?: Secrecy;
  /** Prints a value as a user would write it (`10s`); a duration parser brings its own. */
  format?(value: T): string;
}

export type Spec = Readonly<Record<string, Setting<unknown>>>;
export type ConfigOf<S extends Spec> = { readonly [K in keyof S]: S[K] extends Setting<infer T> ? T : never };

/** Typed constructor that keeps `T` for inference. */
export function setting<T>(s: Setting<T>): Setting<T> {
  return s;
}

const DURATION_UNITS = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1_000],
] as const;

/** Milliseconds as README writes them: the largest unit that divides exactly (`10s`, `5m`, `50ms`, `1500ms`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  for (const [unit, size] of DURATION_UNITS) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** Throws unless `raw` is a URL with one of `protocols` (each with its colon, e.g. `amqp:`). */
function checkUrl(raw: string, protocols: readonly string[]): void {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new Error(`must be a URL such as ${protocols[0]}//host:port`);
  }
  if (!protocols.includes(u.protocol)) throw new Error(`must use ${protocols.join(" or ")}`);
}

/** A parser that also says how to print what it parsed (so `--help` shows `10s`, not `10000`). */
type Formatting<T> = ((raw: string) => T) & { readonly format?: (value: T) => string };

export const parsers = {
  string:
    (opts: { min?: number; max?: number; pattern?: RegExp; what?: string } = {}) =>
    (raw: string): string => {
      const { min = 1, max = 4096, pattern, what } = opts;
      if (raw.length < min || raw.length > max) throw new Error(`must be ${min} to ${max} characters`);
      if (pattern && !pattern.test(raw)) throw new Error(`must be ${what ?? `like ${pattern}`}`);
      return raw;
    },
  int:
    (min: number, max: number) =>
    (raw: string): number => {
      const n = Number(raw.replaceAll("_", ""));
      if (!/^-?[\d_]+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
        throw new Error(`must be an integer from ${min} to ${max}`);
      }
      return n;
    },
  number:
    (min: number, max: number) =>
    (raw: string): number => {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
        throw new Error(`must be a number from ${min} to ${max}`);
      }
      return n;
    },
  url:
    (...protocols: string[]) =>
    (raw: string): string => {
      checkUrl(raw, protocols);
      return raw;
    },
  /**
   * One URL, or several nodes of one cluster as full URLs separated by commas (`amqp://h1:5672,amqp://h2:5672`),
   * each checked as `url` checks one; the value is kept as written (split with {@link splitUrlList}).
   */
  urlList:
    (...protocols: string[]) =>
    (raw: string): string => {
      const urls = splitUrlList(raw);
      if (urls.length === 0) throw new Error(`must be a URL such as ${protocols[0]}//host:port`);
      urls.forEach((one, i) => {
        try {
          checkUrl(one, protocols);
        } catch (err) {
          const which = urls.length === 1 ? "" : `node ${i + 1} of the list: `;
          throw new Error(`${which}${(err as Error).message}`);
        }
      });
      return raw;
    },
  oneOf:
    <T extends string>(...values: T[]) =>
    (raw: string): T => {
      if (!(values as string[]).includes(raw)) throw new Error(`must be one of ${values.join(", ")}`);
      return raw as T;
    },
  /** `500ms`, `2s`, `5m`, `1h`, `90d`, or plain milliseconds; printed back with {@link formatDuration}. */
  duration: (minMs: number, maxMs: number): Formatting<number> =>
    Object.assign(
      (raw: string): number => {
        const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw.trim());
        if (!m) throw new Error("must be a duration such as 500ms, 10s, 5m or 1h");
        const factor = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? "ms"] ?? 1;
        const ms = Math.round(Number(m[1]) * factor);
        if (ms < minMs || ms > maxMs) {
          throw new Error(`must be between ${formatDuration(minMs)} and ${formatDuration(maxMs)}`);
        }
        return ms;
      },
      { format: formatDuration },
    ),
  /** `64MiB`, `1GiB`, `512k`, or plain bytes (binary units); printed back as MiB or GiB where exact. */
  bytes: bytesParser,
  bool: (raw: string): boolean => {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new Error("must be true or false");
  },
} as const;

/** A comma followed by a scheme starts the next URL of a list; a comma inside a password does not. */
const URL_LIST_SEPARATOR = /,(?=[A-Za-z][A-Za-z0-9+.-]*:\/\/)/;

/**
 * The URLs of a setting that may list several nodes of one cluster (`amqp://u:p@h1:5672,amqp://u:p@h2:5672`), in
 * the order written, empty entries dropped. A single URL gives a list of one.
 */
export function splitUrlList(value: string): string[] {
  return value
    .split(URL_LIST_SEPARATOR)
    .map((u) => u.trim())
    .filter(Boolean);
}

/** Shown in place of a secret. */
export const MASK = "***";

/**
 * Which settings are secret, by the name of their variable, so a setting added later is covered without anyone
 * remembering to mark it: a `*_URL` may carry a password (only that part is masked); a `*PASSWORD`,
 * `*PASSPHRASE`, `*SECRET` or `*TOKEN` is masked whole. `Setting.secret` overrides the rule.
 */
export function secrecyOf(s: Pick<Setting<unknown>, "env" | "flag" | "secret">): Secrecy {
  if (s.secret !== undefined) return s.secret;
  const name = s.env ?? s.flag.toUpperCase().replaceAll("-", "_");
  if (/(?:PASSWORD|PASSPHRASE|SECRET|TOKEN)$/.test(name)) return true;
  if (/_URLS?$/.test(name)) return "url";
  return false;
}

const SCHEME = /[A-Za-z][A-Za-z0-9+.-]*:\/\//g;

/**
 * Masks the password of every URL in `text` (`amqp://user:***@host:5672`), valid or not, including a list of
 * URLs separated by commas. A URL's password runs from the `:` after its user name to the last `@` before the
 * next URL, so a password holding `@`, `/` or `,` is masked whole rather than cut at its first odd character.
 */
export function redactUrl(text: string): string {
  const starts = [...text.matchAll(SCHEME)].map((m) => ({ at: m.index, body: m.index + m[0].length }));
  if (starts.length === 0) return text;
  let out = text.slice(0, starts[0]?.at ?? 0);
  for (let i = 0; i < starts.length; i++) {
    const { body } = starts[i] as { at: number; body: number };
    const at = (starts[i] as { at: number }).at;
    const end = starts[i + 1]?.at ?? text.length;
    const segment = text.slice(body, end);
    const lastAt = segment.lastIndexOf("@");
    const colon = segment.indexOf(":");
    out += text.slice(at, body);
    out +=
      lastAt > 0 && colon >= 0 && colon < lastAt
        ? `${segment.slice(0, colon + 1)}${MASK}${segment.slice(lastAt)}`
        : segment;
  }
  return out;
}

/** A raw setting value as it may be printed: whole, masked, or with its URLs' passwords masked. */
export function redact(s: Pick<Setting<unknown>, "env" | "flag" | "secret">, raw: string): string {
  const secrecy = secrecyOf(s);
  if (secrecy === "url") return redactUrl(raw);
  return secrecy ? MASK : raw;
}

/** A parsed value as `--help` and the effective configuration print it (durations as `10s`, secrets masked). */
function show(s: Setting<unknown>, value: unknown): string {
  const format = s.format ?? (s.parse as Formatting<unknown>).format;
  const text =
    value === undefined
      ? "(unset)"
      : format
        ? format(value)
        : typeof value === "string"
          ? value
          : JSON.stringify(value);
  return value === undefined ? text : redact(s, text);
}

/** Every setting of a parsed configuration, keyed by its variable (or `--flag`), printable: secrets masked. */
export function effectiveConfig<S extends Spec>(spec: S, config: ConfigOf<S>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, s] of Object.entries(spec)) {
    out[s.env ?? `--${s.flag}`] = show(s, (config as Record<string, unknown>)[key]);
  }
  return out;
}

type Env = Readonly<Record<string, string | undefined>>;

const set = (v: string | undefined): v is string => v !== undefined && v !== "";

/**
 * The value of `name` from the environment, or from the file `<name>_FILE` names (one trailing newline dropped:
 * what `echo secret > file` writes). Throws an Error when both are set or the file cannot be read.
 */
function fromEnvironment(name: string, env: Env): { raw: string; source: string } | undefined {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (set(direct) && set(file)) {
    throw new Error(`${name} and ${name}_FILE are both set; give only one`);
  }
  if (set(file)) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new Error(`${name}_FILE=${JSON.stringify(file)}: cannot read the file (${code})`);
    }
    return { raw: text.replace(/\r?\n$/, ""), source: `${name} (from ${name}_FILE)` };
  }
  return set(direct) ? { raw: direct, source: name } : undefined;
}

/** The outcome of reading a whole configuration: the config when every setting parsed, and every problem. */
export interface ConfigResult<S extends Spec> {
  readonly config?: ConfigOf<S>;
  /** The positional arguments, in order, when the command takes some (`telemetry backup FILE`). */
  readonly args: readonly string[];
  /** One line each, secrets masked, in the order of the spec (unknown flags first). */
  readonly problems: readonly string[];
}

/**
 * Reads every setting from flags, then environment variables (or their `_FILE`), then defaults, and reports every
 * problem at once rather than the first (for `telemetry check`). Secrets are masked in each problem.
 */
export function collectConfig<S extends Spec>(
  spec: S,
  argv: readonly string[],
  env: Env,
  positionals: readonly string[] = [],
): ConfigResult<S> {
  const problems: string[] = [];
  const args: string[] = [];
  const options: Record<string, { type: "string" | "boolean" }> = {};
  const byFlag = new Map<string, Setting<unknown>>();
  for (const s of Object.values(spec)) {
    options[s.flag] = { type: s.boolean ? "boolean" : "string" };
    byFlag.set(s.flag, s);
  }
  const { values, tokens } = parseArgs({ args: [...argv], options, strict: false, tokens: true });
  for (const t of tokens) {
    if (t.kind === "positional" && args.length < positionals.length) args.push(t.value);
    else if (t.kind === "positional") problems.push(`Unexpected argument '${t.value}'`);
    else if (t.kind === "option" && !byFlag.has(t.name)) problems.push(`Unknown option '${t.rawName}'`);
    else if (t.kind === "option" && !byFlag.get(t.name)?.boolean && t.value === undefined) {
      problems.push(`Option '${t.rawName} <value>' argument missing`);
    } else if (t.kind === "option" && byFlag.get(t.name)?.boolean && t.value !== undefined) {
      problems.push(`Option '${t.rawName}' does not take an argument`);
    }
  }
  for (const name of positionals.slice(args.length)) problems.push(`${name} is missing`);
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(spec)) {
    const fromFlag = values[s.flag];
    let found: { raw: string | boolean; source: string } | undefined;
    try {
      const fromEnv = s.env ? fromEnvironment(s.env, env) : undefined;
      if (fromFlag !== undefined) found = { raw: fromFlag, source: `--${s.flag}` };
      else found = fromEnv;
    } catch (err) {
      problems.push(redact(s, (err as Error).message));
      continue;
    }
    if (found === undefined) {
      out[key] = typeof s.default === "function" ? (s.default as () => unknown)() : s.default;
      continue;
    }
    const { raw, source } = found;
    if (typeof raw === "boolean") {
      out[key] = s.boolean ? raw : undefined;
      continue;
    }
    try {
      out[key] = s.parse(raw);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const shown = redact(s, raw);
      // A parser's message may quote the value; a secret's must not come through it.
      const safeWhy = shown === raw ? why : redact(s, why.replaceAll(raw, shown));
      problems.push(`${source}=${JSON.stringify(shown)}: ${safeWhy.split("\n")[0]}`);
    }
  }
  return problems.length > 0
    ? { problems, args }
    : { config: Object.freeze(out) as ConfigOf<S>, problems, args };
}

/**
 * Parses flags, then environment variables (or `<NAME>_FILE`), then defaults, into one frozen typed object.
 * Throws ConfigError naming the setting on the first bad value or unknown flag (secrets masked); nothing has
 * connected yet.
 */
export function parseConfig<S extends Spec>(spec: S, argv: readonly string[], env: Env): ConfigOf<S> {
  const { config, problems } = collectConfig(spec, argv, env);
  if (!config) throw new ConfigError(problems[0] ?? "invalid configuration");
  return config;
}

/** Word-wraps `text` (its own line breaks kept as spaces) to `width` columns, every line after the first indented. */
export function wrap(text: string, width: number, indent: string): string {
  const words = text.split(/\s+/).filter(Boolean);
  const lines: string[] = [];
  let line = "";
  for (const word of words) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.join(`\n${indent}`);
}

/** `--help` text for a command: usage, summary, and one entry per setting with its variable and default. */
export function helpText(usage: string, summary: string, spec: Spec, extra = ""): string {
  const lines = [
    `Usage: ${usage}`,
    "",
    summary,
    "",
    "Options (flag, then environment variable or <VARIABLE>_FILE, then default):",
  ];
  for (const s of Object.values(spec)) {
    const def =
      s.defaultLabel ??
      (typeof s.default === "function"
        ? "(computed)"
        : s.default === undefined
          ? "unset"
          : typeof s.default === "string"
            ? JSON.stringify(show(s, s.default))
            : show(s, s.default));
    const name = s.boolean ? `--${s.flag}` : `--${s.flag} <value>`;
    lines.push(`  ${name}${s.env ? `  [${s.env}]` : ""}  default ${def}`);
    lines.push(`      ${s.description}`);
  }
  lines.push("  --help", "      Show this help and exit.");
  if (extra) lines.push("", extra);
  return `${lines.join("\n")}\n`;
}
