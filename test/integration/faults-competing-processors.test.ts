import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { faultNames, metric, report, startStream, until } from "../helpers/fault-stream.js";
import { createDatabase, type PgDatabase } from "../helpers/postgres.js";
import { expectStoredExactlyOnceInPostgres } from "../helpers/postgres-stream.js";
import { pipelineOn } from "../helpers/private-pipeline.js";
import { httpGet, untilReady } from "../helpers/services.js";

const READINGS = 10_000;
const RATE = 1_500;
/** Batches that stay open a while, so the killed processor holds delivered, uncommitted, unacked readings. */
const PROCESSOR_ENV = { BATCH_SIZE: "1000", BATCH_DELAY: "1s", PREFETCH: "2000" };

describe("competing processors on one queue writing one PostgreSQL database", () => {
  let db: PgDatabase;

  beforeAll(async () => {
    db = await createDatabase("competing");
  });

  afterAll(async () => {
    await db?.dispose();
  });

  it("every reading is stored exactly once when one of two processors is killed with SIGKILL mid-stream and never restarted", async () => {
    await using run = pipelineOn(faultNames("competing", {}));
    const { names } = run;
    const env = { ...PROCESSOR_ENV, DATABASE_URL: db.url };
    const gateway = await run.gateway(env);
    // Started together: both run the migrations, the advisory lock makes one of them do it.
    const [victim, survivor] = await Promise.all([run.processor(env), run.processor(env)]);
    await untilReady(gateway, victim, survivor);
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 171 });

    // Both compete for the queue; the victim dies with a batch committed and the next one held.
    let heldAtKill = 0;
    let storedByVictim = 0;
    let storedBySurvivor = 0;
    await until("both processors have committed and the victim holds an open batch", 20_000, async () => {
      storedByVictim = await metric(victim.httpPort, "telemetry_processor_readings_stored_total");
      storedBySurvivor = await metric(survivor.httpPort, "telemetry_processor_readings_stored_total");
      heldAtKill = await metric(victim.httpPort, "telemetry_processor_inflight_deliveries");
      return storedByVictim > 0 && storedBySurvivor > 0 && heldAtKill > 0;
    }).catch((err: Error) => {
      throw new Error(
        `${err.message} (victim stored ${storedByVictim}, holds ${heldAtKill}; survivor stored ${storedBySurvivor}; ` +
          `simulator acked ${stream.acked()})`,
      );
    });
    expect(await victim.stop("SIGKILL")).toBeNull();
    expect(stream.acked(), "the kill must land mid-stream").toBeLessThan(READINGS);

    const counts = await expectStoredExactlyOnceInPostgres(names, db, stream);
    // RabbitMQ gave the victim's unacked deliveries to the survivor, which stored them or found them committed.
    expect((await httpGet(survivor.httpPort, "/readyz")).status).toBe(200);
    const survivorStored = await metric(survivor.httpPort, "telemetry_processor_readings_stored_total");
    const survivorDuplicates = await metric(survivor.httpPort, "telemetry_processor_duplicates_total");
    expect(survivorStored + storedByVictim).toBeLessThanOrEqual(counts.stored);
    expect(survivorStored).toBeGreaterThan(0);
    report("competing processors, one killed -9", {
      ...counts,
      storedByVictimBeforeKill: storedByVictim,
      heldAtKill,
      survivorStored,
      survivorDuplicates,
    });
  });
});
