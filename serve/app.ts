/**
 * The HTTP API and dashboard of `telemetry serve` as a Hono app (docs/contract.md, "Queries"): the same
 * queries as the `query` command under `/api/...`, JSON unless `format=csv|ndjson`, streamed; `/api/series` for
 * charts; the dashboard at `/`. Read-only: anything but GET and HEAD is 405. A bad parameter is 400 with
 * `{"error": "..."}`. Testable in-process with `app.request(...)`.
 */

import type { Context } from "hono";
import { Hono } from "hono";
import { ConfigError, type ConfigOf, parseConfig, parsers, type Spec, setting } from "../common/config.js";
import { CONTENT_TYPES, type TextFormat } from "../query/format.js";
import { questionProblem, questions } from "../query/params.js";
import { SILENT_MIN_MS, silenceClock } from "../query/silent.js";
import type { DevicePage, ReadingQueries } from "../store/queries.js";
import { AnswerCache } from "./answer-cache.js";
import { dashboardRoutes } from "./dashboard.js";
import { type Answerer, askDirectly, type Chunk, type Question } from "./questions.js";

const format = setting({
  flag: "format",
  default: "json" as TextFormat,
  description: "Answer format.",
  parse: parsers.oneOf("json", "csv", "ndjson"),
});

/** A bad request: answered 400 with `{"error": message}`. */
class BadRequest extends Error {
  override readonly name = "BadRequest";
}

/**
 * The URL's parameters of question `name`, parsed by the same settings as the CLI's flags (`?from=-1h` as
 * `--from -1h`); parameters the endpoint does not know are ignored, as HTTP clients expect.
 */
function parseQuery<S extends Spec>(
  c: Context,
  question: { readonly spec: S; readonly required: readonly string[] },
): ConfigOf<S & { format: typeof format }> {
  const spec = { ...question.spec, format };
  const known = new Set(Object.values(spec).map((s) => s.flag));
  const url = new URL(c.req.url);
  const argv = [...url.searchParams].filter(([k]) => known.has(k)).flatMap(([k, v]) => [`--${k}`, v]);
  let config: ConfigOf<S & { format: typeof format }>;
  try {
    config = parseConfig(spec, argv, {});
  } catch (err) {
    if (err instanceof ConfigError) throw new BadRequest(err.message.replace(/^--/, ""));
    throw err;
  }
  const problem = questionProblem(question.required, config as Record<string, unknown>, (k) => k);
  if (problem !== undefined) throw new BadRequest(problem);
  return config;
}

/** Questions whose answers are kept whole: the bounded ones a dashboard polls. Exports stream. */
const KEPT: ReadonlySet<Question["kind"]> = new Set(["devices", "latest", "series"]);

/**
 * Answers `question` in `format`: 304 when the client holds the answer of this question under the store's current
 * version (If-None-Match), else from the cache, else from the store. Every answer carries that ETag. A kept kind is
 * read whole (and sent with its length); an export streams, its first chunk read before the response starts (so a
 * failing query is a 500, not a cut-off 200), the rest as the client reads, and a client gone ends the query.
 */
async function respond(
  c: Context,
  source: Answerer,
  cache: AnswerCache,
  question: Question,
  as: TextFormat,
): Promise<Response> {
  const key = `${JSON.stringify(question)}\n${as}\n${await source.version()}`;
  const etag = AnswerCache.etag(key);
  // no-cache: a browser keeps the answer but asks again each time, with If-None-Match.
  const headers = { "content-type": CONTENT_TYPES[as], "cache-control": "no-cache", etag };
  const held = c.req.header("if-none-match");
  if (held?.split(",").some((t) => t.trim().replace(/^W\//, "") === etag))
    return c.body(null, 304, { etag, "cache-control": "no-cache" });
  const encoder = new TextEncoder();
  const bytes = (chunk: Chunk) => (typeof chunk === "string" ? encoder.encode(chunk) : chunk);
  if (KEPT.has(question.kind)) {
    let body = cache.get(key);
    if (body === undefined) {
      const parts: Uint8Array[] = [];
      for await (const chunk of source.ask(question, as)) parts.push(bytes(chunk));
      body = Buffer.concat(parts);
      cache.set(key, body);
    }
    return c.body(body as Uint8Array<ArrayBuffer>, 200, headers);
  }
  const chunks = source.ask(question, as);
  let pending: IteratorResult<Chunk> | undefined = await chunks.next();
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = pending ?? (await chunks.next());
        pending = undefined;
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
  return c.body(stream, 200, headers);
}

/**
 * The app over `source`, which it never closes: a {@link ReadingQueries} answers on the server's thread (tests,
 * PostgreSQL, whose driver does not block it), a query pool (serve/query-pool.ts) in its worker threads.
 * `dashboard: false` leaves out `/` and its assets (for an API-only deployment, or tests of the API alone);
 * `silentMin` is `SILENT_MIN` in ms (default 60 s).
 */
export function createApp(
  source: ReadingQueries | Answerer,
  opts: { readonly dashboard?: boolean; readonly silentMin?: number } = {},
): Hono {
  const answerer: Answerer =
    "ask" in source ? source : { ask: askDirectly(source), version: () => source.version() };
  const cache = new AnswerCache();
  const answer = (c: Context, question: Question, as: TextFormat) =>
    respond(c, answerer, cache, question, as);
  const silentMin = opts.silentMin ?? SILENT_MIN_MS;
  /**
   * Where the page after `page` starts, asked as a question of its own (kept like the page, under the same
   * version), so the answer's text stays the same JSON array whether more follow or not.
   */
  const nextAfter = async (device: string | undefined, page: DevicePage): Promise<string | undefined> => {
    if (page.limit === undefined) return undefined;
    const question: Question = { kind: "next", device, page };
    const key = `${JSON.stringify(question)}\njson\n${await answerer.version()}`;
    let body = cache.get(key);
    if (body === undefined) {
      let text = "";
      const decoder = new TextDecoder();
      for await (const chunk of answerer.ask(question, "json"))
        text += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
      body = new TextEncoder().encode(text);
      cache.set(key, body);
    }
    return (JSON.parse(new TextDecoder().decode(body)) as { after: string }[])[0]?.after;
  };
  /** A page of devices or latest, with `Link: <...>; rel="next"` when more devices follow. */
  const paged = async (c: Context, question: Question & { kind: "devices" | "latest" }, as: TextFormat) => {
    const page = question.page ?? {};
    const [response, after] = await Promise.all([
      answer(c, question, as),
      nextAfter(question.kind === "latest" ? question.device : undefined, page),
    ]);
    if (after !== undefined) {
      const url = new URL(c.req.url);
      url.searchParams.set("after", after);
      response.headers.set("link", `<${url.pathname}${url.search}>; rel="next"`);
    }
    return response;
  };
  const app = new Hono();

  app.get("/healthz", (c) => c.text("ok\n"));
  app.get("/api/devices", (c) => {
    const { format: as, ...page } = parseQuery(c, questions.devices);
    // Part of the question, so a kept answer is handed out again only until the clock moves on.
    const silence = { min: silentMin, at: silenceClock(Date.now(), silentMin) };
    return paged(c, { kind: "devices", page, silence }, as);
  });
  app.get("/api/latest", (c) => {
    const { format: as, device, ...page } = parseQuery(c, questions.latest);
    return paged(c, { kind: "latest", device, page }, as);
  });
  app.get("/api/readings", (c) => {
    const { format: as, ...q } = parseQuery(c, questions.readings);
    return answer(c, { kind: "readings", query: { ...q, device: q.device ?? "" } }, as);
  });
  app.get("/api/stats", (c) => {
    const { format: as, ...q } = parseQuery(c, questions.stats);
    return answer(c, { kind: "stats", query: { ...q, device: q.device ?? "", every: q.every ?? 0 } }, as);
  });
  app.get("/api/series", (c) => {
    const { format: as, ...q } = parseQuery(c, questions.series);
    const query = { ...q, device: q.device ?? "", sensor: q.sensor ?? "", points: q.points ?? 0 };
    return answer(c, { kind: "series", query }, as);
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
