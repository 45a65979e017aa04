/**
 * Preloaded into the gateway and processor with `NODE_OPTIONS=--import=<this file>` when the benchmark runs with
 * `--profile` (Node 20 refuses `--cpu-prof` in NODE_OPTIONS, and startService passes no node flags). It does what
 * `--cpu-prof` does: V8's sampling CPU profiler from start-up to exit, written as a .cpuprofile into
 * $BENCH_CPU_PROFILE_DIR.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { join } from "node:path";

/** Microseconds between samples, as `--cpu-prof-interval` defaults to. */
const SAMPLING_INTERVAL_US = 1_000;

const dir = process.env.BENCH_CPU_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.setSamplingInterval", { interval: SAMPLING_INTERVAL_US });
  session.post("Profiler.start");
  // The in-process inspector session answers synchronously, so this completes inside the exit handler.
  process.on("exit", () => {
    session.post("Profiler.stop", (err, result) => {
      if (err) return;
      mkdirSync(dir, { recursive: true });
      const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
      writeFileSync(join(dir, `CPU.${stamp}.${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
