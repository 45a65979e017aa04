/**
 * The read-only HTTP API and dashboard over the store (docs/contract.md, "Queries"): `startServe(config)` opens the
 * store read-only and listens; the returned handle's `stop()` closes both. `telemetry serve` is `command.ts`.
 */
import { readFileSync } from "node:fs";
import type { Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import { type Running, running } from "../common/pipeline.js";
import { openQueries } from "../store/index.js";
import type { ReadingQueries } from "../store/queries.js";
import { type AppOptions, createApp } from "./app.js";
import { isLoopback } from "./guard.js";
import { type QueryPool, startQueryPool } from "./query-pool.js";

/** Default port of `telemetry serve` (the contract's `SERVE_PORT`). */
export const SERVE_PORT = 8_080;

/** A client gets this long to send a request's headers (slow-loris clients cannot hold sockets for long). */
export const HEADERS_TIMEOUT_MS = 10_000;
/** Default of `SERVE_IDLE_TIMEOUT`: a connection on which nothing moves this long (idle, or not reading) is closed. */
export const IDLE_TIMEOUT_MS = 60_000;

/**
 * What `startServe` needs: the store (the SQLite file, or `databaseUrl`), where to listen, TLS files for HTTPS, and
 * what the app enforces (tokens, limits: see {@link AppOptions}). The Host check is on whenever `host` is loopback.
 */
export interface ServeConfig extends Omit<AppOptions, "loopbackOnly"> {
  readonly dbPath: string;
  readonly databaseUrl?: string | undefined;
  readonly host: string;
  /** 0 picks a free port; the running server reports the one bound. */
  readonly port: number;
  /** PEM certificate chain and key: HTTPS instead of HTTP. */
  readonly tlsCertFile?: string | undefined;
  readonly tlsKeyFile?: string | undefined;
  readonly idleTimeoutMs?: number | undefined;
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
  // Read first, so a file that cannot be read fails the start before anything is opened.
  const tlsFiles =
    config.tlsCertFile !== undefined && config.tlsKeyFile !== undefined
      ? { cert: readFileSync(config.tlsCertFile), key: readFileSync(config.tlsKeyFile) }
      : undefined;
  // SQLite reads block the thread they run on, so they run in worker threads; PostgreSQL's client does not.
  const queries: ReadingQueries | QueryPool = config.databaseUrl
    ? await openQueries(config)
    : await startQueryPool(config.dbPath);
  let app: ReturnType<typeof createApp>;
  try {
    // Reads the dashboard's files, which a partial build lacks.
    app = createApp(queries, { ...config, loopbackOnly: isLoopback(config.host) });
  } catch (err) {
    await queries.stop();
    throw err;
  }
  const tls = tlsFiles !== undefined;
  const idle = config.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
  const timing = {
    headersTimeout: Math.min(HEADERS_TIMEOUT_MS, idle),
    requestTimeout: idle,
    keepAliveTimeout: Math.min(5_000, idle),
    // How often Node checks the two above (default 30 s, longer than the timeouts themselves).
    connectionsCheckingInterval: Math.min(1_000, idle),
  };
  const server = createAdaptorServer({
    fetch: app.fetch,
    ...(tls ? { createServer: createHttpsServer } : {}),
    serverOptions: tls ? { ...timing, ...tlsFiles } : timing,
  }) as Server;
  // A socket on which nothing moves for this long (a client that stopped reading an export) is destroyed; that
  // cancels its question like any client that leaves.
  server.setTimeout(idle);
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
  return running({ url: `${tls ? "https" : "http"}://${host}:${port}`, port }, async () => {
    await new Promise<void>((resolve) => {
      if ("closeAllConnections" in server) server.closeAllConnections();
      server.close(() => resolve());
    });
    await queries.stop();
  });
}
