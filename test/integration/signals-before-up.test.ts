import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { CLI, type LogEntry, readJsonLog } from "../../scripts/spawn.js";

/** dist/common/, next to the built CLI (`npm run build`). */
const COMMON = new URL("../common/", pathToFileURL(CLI));
/** Only guards against a process that never exits. */
const EXIT_BOUND_MS = 15_000;

/**
 * A process running `runUntilSignal` with a start of a given behaviour, exactly as the CLI runs a service: it
 * prints "starting" once the start is under way, and sets its exit code from what `runUntilSignal` returns.
 */
const SCRIPT = `
import { runUntilSignal } from ${JSON.stringify(new URL("service.js", COMMON).href)};
import { createLogger } from ${JSON.stringify(new URL("log.js", COMMON).href)};
const log = createLogger("signals-test", "info");
const mode = process.argv[2];
const keepAlive = () => setInterval(() => undefined, 1_000);
const service = (name) => ({ stop: async () => log.info(name + " stopped") });
const code = await runUntilSignal(log, (signal) => {
  log.info("starting");
  if (mode === "honours-abort") {
    const timer = keepAlive();
    return new Promise((_, reject) => signal.addEventListener("abort", () => { clearInterval(timer); reject(signal.reason); }));
  }
  if (mode === "resolves-late") {
    return new Promise((resolve) => setTimeout(() => resolve(service("late service")), 1_000));
  }
  if (mode === "ignores-abort") {
    keepAlive();
    return new Promise(() => undefined);
  }
  if (mode === "leaks-a-handle") {
    // Open from the start (a service holds sockets while it runs; without a handle the process could end before
    // the signal comes), and left open by stop().
    keepAlive();
    return Promise.resolve({ stop: async () => { log.info("leaky service stopped"); } });
  }
  throw new Error("unknown mode " + mode);
});
process.exitCode = code;
`;

const dir = mkdtempSync(join(tmpdir(), "telemetry-signals-"));
const script = join(dir, "service.mjs");
writeFileSync(script, SCRIPT);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts the script, sends SIGTERM once the start is under way, and returns the exit code, its log and timing. */
async function signalWhileStarting(mode: string) {
  const proc = spawn(process.execPath, [script, mode], { stdio: ["ignore", "pipe", "pipe"] });
  const logs: LogEntry[] = [];
  let output = "";
  let sentAt = 0;
  proc.stderr.on("data", (c: Buffer) => {
    output += c.toString();
  });
  proc.stdout.on("data", (c: Buffer) => {
    output += c.toString();
  });
  readJsonLog(
    proc.stdout,
    (entry) => {
      logs.push(entry);
      if (entry.msg === "starting") {
        sentAt = Date.now();
        proc.kill("SIGTERM");
      }
    },
    // Every line must be a log line: one that is not shows up among the messages the tests compare.
    (line) => logs.push({ msg: `not a JSON log line: ${line}` }),
  );
  const code = await Promise.race([
    new Promise<number | null>((resolve) => proc.once("exit", (c) => resolve(c))),
    new Promise<"still running">((resolve) =>
      setTimeout(() => resolve("still running"), EXIT_BOUND_MS).unref(),
    ),
  ]);
  if (code === "still running") proc.kill("SIGKILL");
  return { code, exitMs: Date.now() - sentAt, msgs: logs.map((l) => l.msg), output };
}

describe("SIGTERM before a service is up stops it in every state", () => {
  it("a start that honours its AbortSignal gives up at once and the process exits 0", async () => {
    const r = await signalWhileStarting("honours-abort");
    expect(r.code, r.output).toBe(0);
    expect(r.msgs).toEqual([
      "starting",
      "signal received before the service was up; stopping the start",
      "stopped before the service was up",
    ]);
    expect(r.exitMs).toBeLessThan(EXIT_BOUND_MS);
  });

  it("a service whose start resolves after the signal is stopped as soon as it is up, and the process exits 0", async () => {
    const r = await signalWhileStarting("resolves-late");
    expect(r.code, r.output).toBe(0);
    expect(r.msgs).toEqual([
      "starting",
      "signal received before the service was up; stopping the start",
      "late service stopped",
      "stopped before the service was up",
    ]);
  });

  it("a start that ignores its AbortSignal is given 5 s, then the process exits 0 anyway and says why", async () => {
    const r = await signalWhileStarting("ignores-abort");
    expect(r.code, r.output).toBe(0);
    expect(r.msgs).toContain(
      "the start did not give up after the signal; exiting anyway (what was not acknowledged is redelivered)",
    );
    expect(r.exitMs).toBeGreaterThanOrEqual(5_000);
  });

  it("a service that leaves a handle open after stopping is ended 5 s later with the exit code already chosen", async () => {
    const r = await signalWhileStarting("leaks-a-handle");
    // Up at once: the signal arrives after the start resolved, so this is the ordinary stop.
    expect(r.code, r.output).toBe(0);
    expect(r.msgs).toContain("leaky service stopped");
    expect(r.msgs).toContain("still running after the service stopped (a handle left open); exiting");
  });
});
