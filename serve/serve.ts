/**
 * The read-only HTTP API and dashboard over the store (docs/contract.md, "Queries"): `startServe(config)` opens the
 * store read-only and listens; the returned handle's `stop()` closes both. `telemetry serve` is `command.ts`.
 */
import type { AddressInfo } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import { type Running, running } from "../common/pipeline.js";
import { openQueries } from "../store/index.js";
import type { ReadingQueries } from "../store/queries.js";
import { createApp } from "./app.js";
import { type QueryPool, startQueryPool } from "./query-pool.js";

/** Default port of `telemetry serve` (the contract's `SERVE_PORT`). */
export const SERVE_PORT = 8_080;

/** What `startServe` needs: the store (the SQLite file, or `databaseUrl`), and where to listen. */
export interface ServeConfig {
  readonly dbPath: string;
  /** `SILENT_MIN` in ms (query/silent.ts); default 60 s. */
  readonly silentMin?: number;
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
    app = createApp(queries, { silentMin: config.silentMin }); // reads the dashboard's files, which a partial build lacks
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
