/** `telemetry serve`: its settings and what it runs (docs/contract.md, "Queries" and "Serve security"). */
import { defineCommand } from "../common/command.js";
import { type ConfigOf, parsers, redactUrl, setting } from "../common/config.js";
import { createLogger } from "../common/log.js";
import { runUntilSignal } from "../common/service.js";
import { common } from "../common/settings.js";
import { parsePemFile } from "../common/tls.js";
import { MAX_BUCKETS, params } from "../query/params.js";
import { isLoopback, parseTokens } from "./guard.js";
import { MAX_EXPORTS, QUERY_TIMEOUT_MS } from "./respond.js";
import { IDLE_TIMEOUT_MS, SERVE_PORT, startServe } from "./serve.js";

const pem = (flag: string, env: string, description: string) =>
  setting<string | undefined>({
    flag,
    env,
    default: undefined,
    defaultLabel: "unset",
    description,
    parse: parsePemFile,
  });

const spec = {
  dbPath: common.dbPath,
  databaseUrl: common.databaseUrl,
  host: setting({
    flag: "http-host",
    env: "HTTP_HOST",
    default: "127.0.0.1",
    description:
      "Address to listen on (0.0.0.0 to be reachable from other machines or outside a container: needs SERVE_TOKEN, or SERVE_AUTH=none).",
    parse: parsers.string(),
  }),
  port: setting({
    flag: "port",
    env: "SERVE_PORT",
    default: SERVE_PORT,
    description: "Port of the API and dashboard (0 picks a free port).",
    parse: parsers.int(0, 65_535),
  }),
  tokens: setting<readonly string[] | undefined>({
    flag: "token",
    env: "SERVE_TOKEN",
    default: undefined,
    defaultLabel: "unset",
    description:
      "Bearer tokens every /api request must carry, one a line (SERVE_TOKEN_FILE: a file of them, so one can be rotated).",
    parse: parseTokens,
  }),
  auth: setting({
    flag: "auth",
    env: "SERVE_AUTH",
    default: "token" as "token" | "none",
    description:
      "none: serve without a token on an address that is not loopback, to anyone who can reach it (on purpose).",
    parse: parsers.oneOf("token", "none"),
  }),
  corsOrigins: setting<readonly string[]>({
    flag: "cors-origins",
    env: "SERVE_CORS_ORIGINS",
    default: [],
    defaultLabel: "none (no CORS headers)",
    description: "Origins (https://host[:port]) whose pages may read the API, separated by commas.",
    parse: (raw) =>
      raw.split(",").map((o) => {
        const origin = o.trim();
        if (!/^https?:\/\/[^/\s]+$/.test(origin))
          throw new Error("must be origins like https://host:port, comma-separated");
        return origin;
      }),
  }),
  tlsCertFile: pem(
    "tls-cert-file",
    "SERVE_TLS_CERT_FILE",
    "PEM certificate chain: serve HTTPS (with SERVE_TLS_KEY_FILE).",
  ),
  tlsKeyFile: pem("tls-key-file", "SERVE_TLS_KEY_FILE", "PEM private key of SERVE_TLS_CERT_FILE."),
  maxBuckets: setting({
    flag: "max-buckets",
    env: "SERVE_MAX_BUCKETS",
    default: MAX_BUCKETS,
    description: "A stats or series question asking for more buckets per series is refused (400).",
    parse: parsers.int(1, 100_000_000),
  }),
  queryTimeoutMs: setting({
    flag: "query-timeout",
    env: "SERVE_QUERY_TIMEOUT",
    default: QUERY_TIMEOUT_MS,
    description: "A question running longer is cancelled in its worker (503, or a cut-off export).",
    parse: parsers.duration(100, 3_600_000),
  }),
  maxExports: setting({
    flag: "max-exports",
    env: "SERVE_MAX_EXPORTS",
    default: MAX_EXPORTS,
    description: "Exports (readings, stats) streaming at once; more are refused with 429.",
    parse: parsers.int(1, 1_000),
  }),
  idleTimeoutMs: setting({
    flag: "idle-timeout",
    env: "SERVE_IDLE_TIMEOUT",
    default: IDLE_TIMEOUT_MS,
    description: "A connection on which nothing moves this long (idle, or a client not reading) is closed.",
    parse: parsers.duration(1_000, 3_600_000),
  }),
  silentMin: params.silentMin,
  logLevel: common.logLevel,
} as const;

/** Why these settings must not start, in one line: open beyond loopback by accident, half a TLS pair. */
export function serveProblem(c: ConfigOf<typeof spec>): string | undefined {
  if ((c.tlsCertFile === undefined) !== (c.tlsKeyFile === undefined))
    return "SERVE_TLS_CERT_FILE and SERVE_TLS_KEY_FILE go together: set both, or neither";
  if (c.auth === "none" && c.tokens !== undefined)
    return "SERVE_AUTH=none and SERVE_TOKEN contradict each other: set one";
  if (!isLoopback(c.host) && c.tokens === undefined && c.auth !== "none")
    return `HTTP_HOST=${c.host} is not loopback and no SERVE_TOKEN is set: set SERVE_TOKEN (or SERVE_TOKEN_FILE), or SERVE_AUTH=none to serve the data to anyone who can reach it`;
  return undefined;
}

export const serveCommand = defineCommand({
  name: "serve",
  usage: "telemetry serve [options]",
  summary:
    "Read-only HTTP API (/api/devices, /api/latest, /api/readings, /api/stats, /api/series, /healthz) and a live\n" +
    "dashboard at / over the store. Runs until SIGINT/SIGTERM.",
  spec,
  check: serveProblem,
  run: (config) => {
    const log = createLogger("serve", config.logLevel);
    return runUntilSignal(log, async () => {
      const serve = await startServe({ ...config, log });
      log.info(
        {
          url: serve.url,
          db: config.databaseUrl ? redactUrl(config.databaseUrl) : config.dbPath,
          tokens: config.tokens?.length ?? 0,
        },
        "serving the API and dashboard",
      );
      if (!isLoopback(config.host) && config.tlsCertFile === undefined)
        log.warn("serving beyond loopback without TLS: tokens and data cross the network in clear text");
      return serve;
    });
  },
});
