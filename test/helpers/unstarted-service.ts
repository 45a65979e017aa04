import { type ChildProcess, spawn } from "node:child_process";
import { freePort } from "../../scripts/private-brokers.js";
import { CLI, type LogEntry, readJsonLog, signalIfRunning } from "../../scripts/spawn.js";

/**
 * A service started as its own process that may never come up (its broker refuses it): unlike `startService`,
 * nothing waits for "<command> started", and the health port is chosen beforehand so `/readyz` can be asked
 * while it is still starting.
 */
export interface UnstartedService {
  readonly proc: ChildProcess;
  readonly httpPort: number;
  /** Every JSON log line so far. */
  readonly logs: LogEntry[];
  /** Everything written on stdout and stderr, lines that are not JSON included. */
  readonly output: () => string;
  /** Resolves with the exit code (null if killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Sends the signal if the process still runs; resolves with its exit code. */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `telemetry <command>` with `env` on a free health port and returns at once. */
export async function spawnService(
  command: "gateway" | "processor",
  env: Record<string, string>,
): Promise<UnstartedService> {
  const httpPort = await freePort();
  const proc = spawn(process.execPath, [CLI, command], {
    env: { ...process.env, ...env, HTTP_PORT: String(httpPort) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: LogEntry[] = [];
  let output = "";
  proc.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  // Lines that are not JSON stay in `output` only.
  readJsonLog(proc.stdout, (entry) => logs.push(entry));
  proc.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  return {
    proc,
    httpPort,
    logs,
    output: () => output,
    exited,
    kill: (signal = "SIGTERM") => signalIfRunning(proc, exited, signal),
  };
}
