/**
 * `telemetry serve`: the read-only HTTP API and dashboard over the store (docs/contract.md, "Queries").
 * `startServe(config)` opens the store read-only and listens; the returned handle's `stop()` closes both.
 */
import type { AddressInfo } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import { defineCommand } from "../common/command.js";
import { parsers, redactUrl, setting } from "../common/config.js";
import { createLogger } from "../common/log.js";
import { type Running, running } from "../common/pipeline.js";
import { runUntilSignal } from "../common/service.js";
import { common } from "../common/settings.js";
import { openQueries } from "../store/index.js";
import type { ReadingQueries } from "../store/queries.js";
import { createApp } from "./app.js";
import { type QueryPool, startQueryPool } from "./query-pool.js";

export { createApp } from "./app.js";

/** Default port of `telemetry serve` (the contract's `SERVE_PORT`). */
export const SERVE_PORT = 8_080;

/** What `startServe` needs: the store (the SQLite file, or `databaseUrl`), and where to listen. */
export interface ServeConfig {
  readonly dbPath: string;
  readonly databaseUrl?: string | undefined;
  readonly host: string;
  /** 0 picks a free port; the running server reports the one bound. */
  readonly port: number;
}

/** A listening `serve`: its base URL and port; `stop()` closes connections, the listener and the store. */
export interface RunningServe extends Running {
  readonly url: string;
  readonly port: number;
}

/**
 * Opens the store read-only and serves the API and dashboard. Rejects with a one-line reason when the store cannot
 * be opened or the address cannot be bound (closing what it opened).
 */
export async function startServe(config: ServeConfig): Promise<RunningServe> {
  // SQLite reads block the thread they run on, so they run in worker threads; PostgreSQL's client does not.
  const queries: ReadingQueries | QueryPool = config.databaseUrl
    ? await openQueries(config)
    : await startQueryPool(config.dbPath);
  let app: ReturnType<typeof createApp>;
  try {
    app = createApp(queries); // reads the dashboard's files, which a partial build lacks
  } catch (err) {
    await queries.stop();
    throw err;
  }
  const server = createAdaptorServer({ fetch: app.fetch });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    await queries.stop();
    throw new Error(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  return running({ url: `http://${host}:${port}`, port }, async () => {
    await new Promise<void>((resolve) => {
      if ("closeAllConnections" in server) server.closeAllConnections();
      server.close(() => resolve());
    });
    await queries.stop();
  });
}

export const serveCommand = defineCommand({
  name: "serve",
  usage: "telemetry serve [options]",
  summary:
    "Read-only HTTP API (/api/devices, /api/latest, /api/readings, /api/stats, /api/series, /healthz) and a live\n" +
    "dashboard at / over the store. Runs until SIGINT/SIGTERM.",
  spec: {
    dbPath: common.dbPath,
    databaseUrl: common.databaseUrl,
    host: setting({
      flag: "http-host",
      env: "HTTP_HOST",
      default: "127.0.0.1",
      description:
        "Address to listen on (0.0.0.0 to be reachable from other machines or outside a container).",
      parse: parsers.string(),
    }),
    port: setting({
      flag: "port",
      env: "SERVE_PORT",
      default: SERVE_PORT,
      description: "Port of the API and dashboard (0 picks a free port).",
      parse: parsers.int(0, 65_535),
    }),
    logLevel: common.logLevel,
  },
  run: (config) => {
    const log = createLogger("serve", config.logLevel);
    return runUntilSignal(log, async () => {
      const serve = await startServe(config);
      log.info(
        { url: serve.url, db: config.databaseUrl ? redactUrl(config.databaseUrl) : config.dbPath },
        "serving the API and dashboard",
      );
      return serve;
    });
  },
});
