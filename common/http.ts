import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { Health } from "./pipeline.js";

export interface HttpEndpoint {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /healthz` (alive), `GET /readyz` (200 or 503 with the reason) and `GET /metrics` (Prometheus text).
 * Resolves once listening; rejects if the port cannot be bound.
 */
export async function startHttp(opts: {
  host: string;
  port: number;
  readiness: () => Health;
  registry: Registry;
  /** Called before each scrape, to set gauges from live state. */
  beforeMetrics?: () => void;
}): Promise<HttpEndpoint> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET" }).end();
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      const r = opts.readiness();
      if (r.ready) res.writeHead(200, { "content-type": "text/plain" }).end("ready\n");
      else res.writeHead(503, { "content-type": "text/plain" }).end(`not ready: ${r.reason}\n`);
    } else if (path === "/metrics") {
      opts.beforeMetrics?.();
      opts.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": opts.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else {
      res
        .writeHead(404, { "content-type": "text/plain" })
        .end("not found: try /healthz, /readyz, /metrics\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
