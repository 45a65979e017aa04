/**
 * The HTTP API and dashboard of `telemetry serve` as a Hono app (docs/contract.md, "Queries"): the same
 * queries as the `query` command under `/api/...`, JSON unless `format=csv|ndjson`, streamed; `/api/series` for
 * charts; the dashboard at `/`. Read-only: anything but GET and HEAD is 405. A bad parameter is 400 with
 * `{"error": "..."}`. Testable in-process with `app.request(...)`.
 */

import type { Context } from "hono";
import { Hono } from "hono";
import { ConfigError, type ConfigOf, parseConfig, parsers, type Spec, setting } from "../common/config.js";
import { CONTENT_TYPES } from "../query/format.js";
import { params } from "../query/params.js";
import { rangeProblem } from "../query/time.js";
import type { ReadingQueries } from "../store/queries.js";
import { dashboardRoutes } from "./dashboard.js";
import type { QueryPool } from "./query-pool.js";
import { type Ask, askDirectly, type Chunk, type HttpFormat } from "./questions.js";

const format = setting({
  flag: "format",
  default: "json" as "json" | "csv" | "ndjson",
  description: "Answer format.",
  parse: parsers.oneOf("json", "csv", "ndjson"),
});

const specs = {
  devices: { format },
  latest: { device: params.device, format },
  readings: {
    device: params.device,
    sensor: params.sensor,
    from: params.from,
    to: params.to,
    limit: params.limit,
    order: params.order,
    format,
  },
  stats: {
    device: params.device,
    sensor: params.sensor,
    every: params.every,
    from: params.from,
    to: params.to,
    fill: params.fill,
    format,
  },
  series: {
    device: params.device,
    sensor: params.sensor,
    from: params.from,
    to: params.to,
    points: params.points,
    format,
  },
} as const satisfies Record<string, Spec>;

/** A bad request: answered 400 with `{"error": message}`. */
class BadRequest extends Error {
  override readonly name = "BadRequest";
}

/**
 * The URL's parameters parsed by the same settings as the CLI's flags (`?from=-1h` as `--from -1h`); parameters
 * the endpoint does not know are ignored, as HTTP clients expect.
 */
function parseQuery<S extends Spec>(c: Context, spec: S, ...required: (keyof S & string)[]): ConfigOf<S> {
  const url = new URL(c.req.url);
  const known = new Set(Object.values(spec).map((s) => s.flag));
  const argv = [...url.searchParams].filter(([k]) => known.has(k)).flatMap(([k, v]) => [`--${k}`, v]);
  let config: ConfigOf<S>;
  try {
    config = parseConfig(spec, argv, {});
  } catch (err) {
    if (err instanceof ConfigError) throw new BadRequest(err.message.replace(/^--/, ""));
    throw err;
  }
  const values = config as Record<string, unknown>;
  const missing = required.find((k) => values[k] === undefined);
  if (missing !== undefined) throw new BadRequest(`${spec[missing]?.flag ?? missing} is required`);
  const range = rangeProblem(values.from as number | undefined, values.to as number | undefined);
  if (range !== undefined) throw new BadRequest(range);
  return config;
}

/**
 * Streams the answer's text: its first chunk is read before the response starts (so a failing query is a 500,
 * not a cut-off 200), and the one after it, to know whether it is the whole answer; the rest as the client reads,
 * and a client gone ends the query.
 */
async function respond(c: Context, chunks: AsyncGenerator<Chunk>, as: HttpFormat): Promise<Response> {
  const headers = { "content-type": CONTENT_TYPES[as], "cache-control": "no-store" };
  const encoder = new TextEncoder();
  const bytes = (chunk: Chunk) => (typeof chunk === "string" ? encoder.encode(chunk) : chunk);
  const first = await chunks.next();
  const second = first.done ? first : await chunks.next();
  // An answer in one chunk (from a query worker: any answer of up to 256 KiB of text) goes out whole, with its
  // length: no stream to pull, one write.
  if (!first.done && second.done) return c.body(bytes(first.value) as Uint8Array<ArrayBuffer>, 200, headers);
  const pending: IteratorResult<Chunk>[] = first.done ? [first] : [first, second];
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = pending.shift() ?? (await chunks.next());
        if (next.done) controller.close();
        else controller.enqueue(bytes(next.value));
      } catch (err) {
        controller.error(err);
      }
    },
    async cancel() {
      await chunks.return(undefined);
    },
  });
  return c.body(body, 200, headers);
}

/**
 * The app over `source`, which it never closes: a {@link ReadingQueries} answers on the server's thread (tests,
 * PostgreSQL, whose driver does not block it), a {@link QueryPool} in its worker threads. `dashboard: false` leaves
 * out `/` and its assets (for an API-only deployment, or tests of the API alone).
 */
export function createApp(
  source: ReadingQueries | QueryPool,
  opts: { readonly dashboard?: boolean } = {},
): Hono {
  const ask: Ask = "ask" in source ? source.ask : askDirectly(source);
  const app = new Hono();

  app.get("/healthz", (c) => c.text("ok\n"));
  app.get("/api/devices", (c) => {
    const q = parseQuery(c, specs.devices);
    return respond(c, ask({ kind: "devices" }, q.format), q.format);
  });
  app.get("/api/latest", (c) => {
    const q = parseQuery(c, specs.latest);
    return respond(c, ask({ kind: "latest", device: q.device }, q.format), q.format);
  });
  app.get("/api/readings", (c) => {
    const q = parseQuery(c, specs.readings, "device");
    return respond(c, ask({ kind: "readings", query: { ...q, device: q.device ?? "" } }, q.format), q.format);
  });
  app.get("/api/stats", (c) => {
    const q = parseQuery(c, specs.stats, "device", "every");
    const query = { ...q, device: q.device ?? "", every: q.every ?? 0 };
    return respond(c, ask({ kind: "stats", query }, q.format), q.format);
  });
  app.get("/api/series", (c) => {
    const q = parseQuery(c, specs.series, "device", "sensor", "points");
    const query = { ...q, device: q.device ?? "", sensor: q.sensor ?? "", points: q.points ?? 0 };
    return respond(c, ask({ kind: "series", query }, q.format), q.format);
  });

  if (opts.dashboard ?? true) app.route("/", dashboardRoutes());

  app.on(["POST", "PUT", "PATCH", "DELETE"], "*", (c) =>
    c.json({ error: `${c.req.method} not allowed: this API is read-only` }, 405, { allow: "GET, HEAD" }),
  );
  app.notFound((c) => c.json({ error: `not found: ${new URL(c.req.url).pathname}` }, 404));
  app.onError((err, c) => {
    if (err instanceof BadRequest) return c.json({ error: err.message }, 400);
    return c.json({ error: err.message }, 500);
  });
  return app;
}
