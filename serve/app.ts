/**
 * The HTTP API and dashboard of `telemetry serve` as a Hono app (docs/contract.md, "Queries"): the same
 * queries as the `query` command under `/api/...`, JSON unless `format=csv|ndjson`, streamed; `/api/series` for
 * charts; the dashboard at `/`. Read-only: anything but GET and HEAD is 405. A bad parameter is 400 with
 * `{"error": "..."}`. Testable in-process with `app.request(...)`.
 */

import { randomUUID } from "node:crypto";
import type { Context } from "hono";
import { Hono } from "hono";
import { ConfigError, type ConfigOf, parseConfig, parsers, type Spec, setting } from "../common/config.js";
import { type Logger, silentLogger } from "../common/log.js";
import type { TextFormat } from "../query/format.js";
import { bucketProblem, MAX_BUCKETS, questionProblem, questions, statsBuckets } from "../query/params.js";
import { SILENT_MIN_MS, silenceClock } from "../query/silent.js";
import type { DevicePage, ReadingQueries } from "../store/queries.js";
import { AnswerCache } from "./answer-cache.js";
import { dashboardRoutes } from "./dashboard.js";
import { type GuardOptions, guard } from "./guard.js";
import { type Answerer, askDirectly, type Question } from "./questions.js";
import { MAX_EXPORTS, QUERY_TIMEOUT_MS, Refusal, responder } from "./respond.js";

const format = setting({
  flag: "format",
  default: "json" as TextFormat,
  description: "Answer format.",
  parse: parsers.oneOf("json", "csv", "ndjson"),
});

/** A bad request: answered 400 with `{"error": message}`. */
class BadRequest extends Refusal {
  constructor(message: string) {
    super(400, message);
  }
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

/** What the app enforces; every field has a default that suits a test of the API in-process. */
export interface AppOptions extends GuardOptions {
  /** false leaves out `/` and its assets (an API-only deployment, or tests of the API alone). */
  readonly dashboard?: boolean | undefined;
  /** Buckets a `stats` or `series` question may ask for (`SERVE_MAX_BUCKETS`). */
  readonly maxBuckets?: number | undefined;
  /** A question running longer is cancelled (`SERVE_QUERY_TIMEOUT`). */
  readonly queryTimeoutMs?: number | undefined;
  /** Exports streaming at once; more are 429 (`SERVE_MAX_EXPORTS`). */
  readonly maxExports?: number | undefined;
  /** `SILENT_MIN` in ms (query/silent.ts): a device quiet this long is silent; default 60 s. */
  readonly silentMin?: number | undefined;
  /** Where a 500's details go, under the id its answer shows. */
  readonly log?: Logger | undefined;
}

/**
 * The app over `source`, which it never closes: a {@link ReadingQueries} answers on the server's thread (tests,
 * PostgreSQL, whose driver does not block it), a query pool (serve/query-pool.ts) in its worker threads. Without
 * `tokens` the API is open; serve/command.ts decides when that is allowed.
 */
export function createApp(source: ReadingQueries | Answerer, opts: AppOptions = {}): Hono {
  const answerer: Answerer =
    "ask" in source ? source : { ask: askDirectly(source), version: () => source.version() };
  const log = opts.log ?? silentLogger();
  const cache = new AnswerCache();
  const answer = responder({
    source: answerer,
    cache,
    timeoutMs: opts.queryTimeoutMs ?? QUERY_TIMEOUT_MS,
    maxExports: opts.maxExports ?? MAX_EXPORTS,
    log,
  });
  const limit = opts.maxBuckets ?? MAX_BUCKETS;
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
  /**
   * A page of devices or latest, with `Link: <...>; rel="next"` when more devices follow. HEAD runs no query, so it
   * gets no `Link`. The link names the same `/api` path, so following it needs the same token.
   */
  const paged = async (c: Context, question: Question & { kind: "devices" | "latest" }, as: TextFormat) => {
    const page = question.page ?? {};
    const [response, after] = await Promise.all([
      answer(c, question, as),
      c.req.method === "HEAD"
        ? undefined
        : nextAfter(question.kind === "latest" ? question.device : undefined, page),
    ]);
    if (after !== undefined) {
      const url = new URL(c.req.url);
      url.searchParams.set("after", after);
      response.headers.set("link", `<${url.pathname}${url.search}>; rel="next"`);
    }
    return response;
  };
  const app = new Hono();

  app.use("*", guard(opts));

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
    const problem = bucketProblem(
      statsBuckets({ ...q, every: q.every ?? 1 }, Date.now()),
      limit,
      "SERVE_MAX_BUCKETS",
    );
    if (problem !== undefined) throw new BadRequest(problem);
    return answer(c, { kind: "stats", query: { ...q, device: q.device ?? "", every: q.every ?? 0 } }, as);
  });
  app.get("/api/series", (c) => {
    const { format: as, ...q } = parseQuery(c, questions.series);
    const problem = bucketProblem(q.points ?? 0, limit, "SERVE_MAX_BUCKETS");
    if (problem !== undefined) throw new BadRequest(problem);
    const query = { ...q, device: q.device ?? "", sensor: q.sensor ?? "", points: q.points ?? 0 };
    return answer(c, { kind: "series", query }, as);
  });

  if (opts.dashboard ?? true) app.route("/", dashboardRoutes());

  app.on(["POST", "PUT", "PATCH", "DELETE"], "*", (c) =>
    c.json({ error: `${c.req.method} not allowed: this API is read-only` }, 405, { allow: "GET, HEAD" }),
  );
  app.notFound((c) => c.json({ error: `not found: ${new URL(c.req.url).pathname}` }, 404));
  app.onError((err, c) => {
    if (err instanceof Refusal) return c.json({ error: err.message }, err.status);
    // The message may name files, hosts and ports of the store: the client gets an id to quote, the log the rest.
    const id = randomUUID();
    log.error({ id, err, path: c.req.path }, "request failed");
    return c.json({ error: "internal error", id }, 500);
  });
  return app;
}
