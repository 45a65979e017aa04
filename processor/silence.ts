/**
 * The silent-devices gauge (docs/contract.md, "Contract: rollups, retention and devices"): how many devices are
 * silent now by the rule of query/silent.ts, one number without a label per device (a label per device would be a
 * series per device in Prometheus), read from the store every {@link SILENCE_CHECK_MS}. The alert rule in
 * deploy/prometheus-alerts.yml fires on it; `telemetry query devices` and `telemetry status` name the devices.
 */
import { Gauge, type Registry } from "prom-client";
import type { Logger } from "../common/log.js";
import { type Running, running } from "../common/pipeline.js";
import { isSilent } from "../query/silent.js";
import { openQueries, type StoreConfig } from "../store/index.js";

/** How often the gauge is computed: a device goes silent after at least SILENT_MIN (default 60 s). */
export const SILENCE_CHECK_MS = 15_000;

/**
 * Starts the gauge `telemetry_processor_silent_devices` on `registry`: computed before it resolves, then every
 * {@link SILENCE_CHECK_MS}, from a read-only connection of its own (on SQLite a read of the per-series rollup; on
 * PostgreSQL `devices` reads every row, see docs/querying.md). A failed check is logged and leaves the last value.
 * `stop()` ends the checks and closes the connection.
 */
export async function startSilenceGauge(
  config: StoreConfig & { readonly silentMin: number },
  registry: Registry,
  log: Logger,
  checkMs = SILENCE_CHECK_MS,
): Promise<Running> {
  const gauge = new Gauge({
    name: "telemetry_processor_silent_devices",
    help: "Devices with nothing received for more than three of their usual intervals and at least SILENT_MIN",
    registers: [registry],
  });
  const queries = await openQueries(config);
  let checking: Promise<void> = Promise.resolve();
  const check = async () => {
    try {
      const now = Date.now();
      gauge.set((await queries.devices()).filter((d) => isSilent(d, now, config.silentMin)).length);
    } catch (err) {
      log.warn({ err }, "could not count silent devices");
    }
  };
  checking = check();
  await checking;
  const timer = setInterval(() => {
    checking = checking.then(check);
  }, checkMs);
  timer.unref();
  return running({}, async () => {
    clearInterval(timer);
    await checking;
    await queries.stop();
  });
}
