import amqp from "amqplib";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import { faultNames, metric } from "../helpers/fault-stream.js";
import { createDatabase, type PgDatabase } from "../helpers/postgres.js";
import { type PrivateRabbit, startPrivateRabbit } from "../helpers/private-brokers.js";
import {
  cleanup,
  countRows,
  httpGet,
  type Service,
  startService,
  type TestNames,
  untilReady,
} from "../helpers/services.js";
import { expectNumbered, lockSqlite, publishNumbered, untilLockedOut } from "../helpers/store-faults.js";

/** RabbitMQ's consumer_timeout on the private node: a held delivery older than this closes its channel. */
const CONSUMER_TIMEOUT_MS = 3_000;
/**
 * How often a channel checks it: `channel_tick_interval` (default 60 s) has no rabbitmq.conf key on 3.10, so it is
 * set in the running node; channels opened afterwards tick at this rate.
 */
const TICK_MS = 500;
/** Each half of the outage, either side of the processor's restart: several consumer timeouts long. */
const OUTAGE_HALF_MS = 15_000;
const PROCESSOR_ENV = { BATCH_SIZE: "50", BATCH_DELAY: "20ms", GATEWAY_INFLIGHT: "5000" };

/** Publishes readings `first` .. `first + count - 1` of one device at QoS 1; resolves once all are PUBACKed. */
/** Messages on `<QUEUE>.dead` of the private node. */
async function deadCount(rabbit: PrivateRabbit, names: TestNames): Promise<number> {
  const conn = await amqp.connect(rabbit.url);
  try {
    const ch = await conn.createChannel();
    return (await ch.checkQueue(queueNames(names.queue).dead)).messageCount;
  } finally {
    await conn.close();
  }
}

/** The processor's log lines saying RabbitMQ closed its channel for a delivery held past consumer_timeout. */
function timedOut(service: Service): unknown[] {
  return service.logs.filter((l) => /timed out/.test(String(l.err ?? "")));
}

describe("fault: a store outage many times longer than RabbitMQ's consumer_timeout", () => {
  let rabbit: PrivateRabbit;
  let names: TestNames | undefined;
  let database: PgDatabase | undefined;
  const services: Service[] = [];

  beforeAll(async () => {
    rabbit = await startPrivateRabbit({ extraConfig: [`consumer_timeout = ${CONSUMER_TIMEOUT_MS}`] });
    await rabbit.ctl("eval", `application:set_env(rabbit, channel_tick_interval, ${TICK_MS}).`);
  });

  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.stop("SIGKILL")));
    if (names) await cleanup(names);
    await database?.dispose();
    names = undefined;
    database = undefined;
  });

  afterAll(async () => {
    await rabbit.stop();
  });

  it("a SQLite write lock held through a processor restart: nothing on .dead, every reading stored once, /readyz names SQLite", async () => {
    names = faultNames("store-outage", { amqpUrl: rabbit.url });
    const env = { ...names.env, ...PROCESSOR_ENV };
    const [gateway, first] = await Promise.all([
      startService("gateway", env),
      startService("processor", env),
    ]);
    services.push(gateway, first);
    await untilReady(gateway, first);
    await publishNumbered(names, 0, 100);
    const dbPath = names.dbPath;
    await vi.waitFor(() => expect(countRows(dbPath)).toBe(100), { timeout: 15_000 });

    const unlock = lockSqlite(dbPath);
    await publishNumbered(names, 100, 300);
    await untilLockedOut(first.httpPort, 15_000);
    await new Promise((r) => setTimeout(r, OUTAGE_HALF_MS));
    expect(timedOut(first)).toEqual([]);
    expect(await metric(first.httpPort, "telemetry_processor_handed_back_total")).toBeGreaterThan(0);

    // Killed during the outage, and a new processor on the same queue and database while SQLite is still locked.
    await first.stop("SIGKILL");
    const second = await startService("processor", env);
    services.push(second);
    await vi.waitFor(
      async () => expect((await httpGet(second.httpPort, "/readyz")).body).toMatch(/cannot commit to SQLite/),
      { timeout: 15_000 },
    );
    await new Promise((r) => setTimeout(r, OUTAGE_HALF_MS));
    expect(timedOut(second)).toEqual([]);
    expect(countRows(dbPath)).toBe(100);

    unlock();
    await vi.waitFor(() => expect(countRows(dbPath)).toBe(400), { timeout: 30_000 });
    await vi.waitFor(async () => expect((await httpGet(second.httpPort, "/readyz")).status).toBe(200), {
      timeout: 15_000,
    });
    expectNumbered(dbPath, 400);
    expect(await deadCount(rabbit, names)).toBe(0);
    expect(timedOut(second)).toEqual([]);
  });

  it("a PostgreSQL table lock that makes commits hang: held deliveries handed back, nothing on .dead, every reading stored once", async () => {
    names = faultNames("store-hang", { amqpUrl: rabbit.url });
    database = await createDatabase("store_hang");
    // A commit under way for a second counts as a failing store.
    const env = { ...names.env, ...PROCESSOR_ENV, DATABASE_URL: database.url, STALL_TIMEOUT: "1s" };
    const [gateway, processor] = await Promise.all([
      startService("gateway", env),
      startService("processor", env),
    ]);
    services.push(gateway, processor);
    await untilReady(gateway, processor);
    const db = database;
    const count = async () =>
      Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM readings"))[0]?.n);
    await publishNumbered(names, 0, 100);
    await vi.waitFor(async () => expect(await count()).toBe(100), { timeout: 15_000 });

    // EXCLUSIVE: readers go on, every INSERT waits for the lock, without an error.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    await locker.query("BEGIN");
    await locker.query("LOCK TABLE readings IN EXCLUSIVE MODE");
    await publishNumbered(names, 100, 300);
    await vi.waitFor(
      async () =>
        expect((await httpGet(processor.httpPort, "/readyz")).body).toMatch(
          /cannot commit to PostgreSQL: commit under way/,
        ),
      { timeout: 15_000 },
    );
    await new Promise((r) => setTimeout(r, OUTAGE_HALF_MS));
    expect(timedOut(processor)).toEqual([]);
    expect(await metric(processor.httpPort, "telemetry_processor_handed_back_total")).toBeGreaterThan(0);
    expect(await count()).toBe(100);

    await locker.query("ROLLBACK");
    await locker.end();
    await vi.waitFor(async () => expect(await count()).toBe(400), { timeout: 30_000 });
    await vi.waitFor(async () => expect((await httpGet(processor.httpPort, "/readyz")).status).toBe(200), {
      timeout: 15_000,
    });
    const seqs = await db.query<{ seq: number }>("SELECT seq FROM readings ORDER BY seq");
    expect(seqs.map((r) => Number(r.seq))).toEqual(Array.from({ length: 400 }, (_, i) => i));
    expect(await deadCount(rabbit, names)).toBe(0);
    expect(timedOut(processor)).toEqual([]);
  });
});
