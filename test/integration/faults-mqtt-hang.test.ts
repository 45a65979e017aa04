import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { expectStoredExactlyOnce, metric, report, startStream, until } from "../helpers/fault-stream.js";
import { privateBrokersPerFile } from "../helpers/private-pipeline.js";
import { watchReadiness } from "../helpers/readiness.js";
import { countRows } from "../helpers/services.js";

/** How long the broker stays stopped, as issue 18 asks. */
const HANG_MS = 30_000;
const READINGS = 8_000;
const RATE = 200;
/**
 * The gateway's keepalive here (MQTT_KEEPALIVE). With the default 30 s, a 30 s hang ends before the gateway can
 * notice it (it gives up after up to two keepalives).
 */
const KEEPALIVE_S = 10;
/** PINGREQ after a keepalive, no PINGRESP by the next one: two keepalives, plus a second for the readiness poll. */
const DETECTION_BOUND_MS = 2 * KEEPALIVE_S * 1_000 + 1_000;
const CATCH_UP_MS = 90_000;
const TEST_TIMEOUT_MS = 240_000;
const LOCALHOST = "127.0.0.1";

describe("fault: the MQTT broker hangs (SIGSTOP for 30 s, then SIGCONT) with the whole pipeline running", () => {
  // The test's own `finally` resumes the broker; a broker still stopped at the end is SIGKILLed by its stop().
  const brokers = privateBrokersPerFile({ mosquitto: { maxQueued: 0, persistence: true } });

  it(
    "the gateway's /readyz says the MQTT broker is gone within two keepalives, and after SIGCONT every acknowledged reading is stored once without a restart",
    async () => {
      await using run = await brokers().pipeline("fault-mqtt-hang");
      const { names } = run;
      const { mosquitto } = brokers();
      const db = names.dbPath;
      // Subscribed first (start() waits for /readyz): the broker acknowledges and drops a reading published before
      // any subscription.
      const { gateway: gw, processor } = await run.start({ MQTT_KEEPALIVE: String(KEEPALIVE_S) });
      const stream = startStream(names, { count: READINGS, rate: RATE, seed: 1_818 });
      await until("a quarter of the stream is stored", 60_000, async () => countRows(db) >= READINGS / 4);

      const watch = watchReadiness(LOCALHOST, gw.httpPort);
      await until("the readiness watch has its first answer", 5_000, async () => watch.changes.length > 0);
      expect(watch.changes[0]?.status, "ready before the hang").toBe(200);

      const broker = mosquitto.pid;
      const ackedAtHang = stream.acked();
      const hungAt = Date.now();
      process.kill(broker, "SIGSTOP");
      try {
        // The fault lasts HANG_MS; the watch records what the gateway says meanwhile.
        await sleep(HANG_MS);
      } finally {
        process.kill(broker, "SIGCONT");
      }
      const resumedAt = Date.now();
      const storedAtResume = countRows(db);
      expect(ackedAtHang, "the hang must come mid-stream").toBeLessThan(READINGS);

      const noticed = watch.firstNotReady(hungAt);
      await until("the gateway is ready again", CATCH_UP_MS, async () => {
        return (
          watch.firstReady(noticed?.at ?? resumedAt) !== undefined && watch.changes.at(-1)?.status === 200
        );
      });
      const counts = await expectStoredExactlyOnce(names, stream, CATCH_UP_MS);
      const caughtUpAt = Date.now();
      await watch.stop();

      const readyAgain = watch.firstReady(noticed?.at ?? resumedAt);
      const figures = {
        ...counts,
        duplicates: await metric(processor.httpPort, "telemetry_processor_duplicates_total"),
        ackedAtHang,
        storedAtResume,
        detectionMs: noticed ? noticed.at - hungAt : null,
        reason: noticed?.body ?? null,
        readyAgainAfterResumeMs: readyAgain ? readyAgain.at - resumedAt : null,
        allStoredAfterResumeMs: caughtUpAt - resumedAt,
        readiness: watch.changes.map((c) => `${c.at - hungAt} ms after SIGSTOP: ${c.status} ${c.body}`),
      };
      report(`mosquitto hung (SIGSTOP) for ${HANG_MS / 1_000} s`, figures);

      expect(noticed, "/readyz reported nothing while the broker was hung").toBeDefined();
      expect(noticed?.body).toMatch(/mqtt/i);
      expect(figures.detectionMs, "/readyz noticed the hung broker late").toBeLessThanOrEqual(
        DETECTION_BOUND_MS,
      );
      expect(mosquitto.pid, "the broker was resumed, not restarted").toBe(broker);
      expect(gw.proc.exitCode, "the gateway kept running").toBeNull();
      expect(await metric(gw.httpPort, "telemetry_gateway_publish_backlog")).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );
});
