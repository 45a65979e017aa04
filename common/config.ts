import { parseArgs } from "node:util";

/** A setting the user got wrong: the CLI prints `message` on one line and exits with code 2. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** One setting of a command: where it comes from (flag, environment variable, default) and how it is parsed. */
export interface Setting<T> {
  /** Long flag without the leading dashes, e.g. `mqtt-url`. */
  readonly flag: string;
  /** Environment variable read when the flag is absent. */
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
}

export type Spec = Readonly<Record<string, Setting<unknown>>>;
export type ConfigOf<S extends Spec> = { readonly [K in keyof S]: S[K] extends Setting<infer T> ? T : never };

/** Typed constructor that keeps `T` for inference. */
export function setting<T>(s: Setting<T>): Setting<T> {
  return s;
}

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
      let u: URL;
      try {
        u = new URL(raw);
      } catch {
        throw new Error(`must be a URL such as ${protocols[0]}//host:port`);
      }
      if (!protocols.includes(u.protocol)) throw new Error(`must use ${protocols.join(" or ")}`);
      return raw;
    },
  oneOf:
    <T extends string>(...values: T[]) =>
    (raw: string): T => {
      if (!(values as string[]).includes(raw)) throw new Error(`must be one of ${values.join(", ")}`);
      return raw as T;
    },
  /** `500ms`, `2s`, `5m`, `1h`, or plain milliseconds. */
  duration:
    (minMs: number, maxMs: number) =>
    (raw: string): number => {
      const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
      if (!m) throw new Error("must be a duration such as 500ms, 10s, 5m or 1h");
      const factor = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] ?? "ms"] ?? 1;
      const ms = Math.round(Number(m[1]) * factor);
      if (ms < minMs || ms > maxMs) throw new Error(`must be between ${minMs} ms and ${maxMs} ms`);
      return ms;
    },
  bool: (raw: string): boolean => {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new Error("must be true or false");
  },
} as const;

/**
 * Parses flags, then environment variables, then defaults, into one frozen typed object.
 * Throws ConfigError naming the setting on the first bad value or unknown flag; nothing has connected yet.
 */
export function parseConfig<S extends Spec>(
  spec: S,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ConfigOf<S> {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const s of Object.values(spec)) options[s.flag] = { type: s.boolean ? "boolean" : "string" };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message.split("\n")[0] : String(err));
  }
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(spec)) {
    const fromFlag = values[s.flag];
    const fromEnv = s.env ? env[s.env] : undefined;
    const raw =
      fromFlag !== undefined ? fromFlag : fromEnv !== undefined && fromEnv !== "" ? fromEnv : undefined;
    if (raw === undefined) {
      out[key] = typeof s.default === "function" ? (s.default as () => unknown)() : s.default;
      continue;
    }
    const source = fromFlag !== undefined ? `--${s.flag}` : `${s.env}`;
    try {
      out[key] = typeof raw === "boolean" ? raw : s.parse(raw);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new ConfigError(`${source}=${JSON.stringify(raw)}: ${why}`);
    }
  }
  return Object.freeze(out) as ConfigOf<S>;
}

/** `--help` text for a command: usage, summary, and one entry per setting with its variable and default. */
export function helpText(usage: string, summary: string, spec: Spec, extra = ""): string {
  const lines = [
    `Usage: ${usage}`,
    "",
    summary,
    "",
    "Options (flag, then environment variable, then default):",
  ];
  for (const s of Object.values(spec)) {
    const def =
      s.defaultLabel ?? (typeof s.default === "function" ? "(computed)" : JSON.stringify(s.default ?? null));
    const name = s.boolean ? `--${s.flag}` : `--${s.flag} <value>`;
    lines.push(`  ${name}${s.env ? `  [${s.env}]` : ""}  default ${def}`);
    lines.push(`      ${s.description}`);
  }
  lines.push("  --help", "      Show this help and exit.");
  if (extra) lines.push("", extra);
  return `${lines.join("\n")}\n`;
}
