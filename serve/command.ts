/** `telemetry serve`: its settings and what it runs (docs/contract.md, "Queries"). */
import { defineCommand } from "../common/command.js";
import { parsers, redactUrl, setting } from "../common/config.js";
import { createLogger } from "../common/log.js";
import { runUntilSignal } from "../common/service.js";
import { common } from "../common/settings.js";
import { params } from "../query/params.js";
import { SERVE_PORT, startServe } from "./serve.js";

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
    silentMin: params.silentMin,
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
