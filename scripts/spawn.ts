import { type ChildProcess, spawn } from "node:child_process";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";

/** The built CLI (`npm run build`), whether this module runs from dist/ or from source under vitest. */
export const CLI = fileURLToPath(
  new URL(
    import.meta.url.includes("/dist/") ? "../cli/telemetry.js" : "../dist/cli/telemetry.js",
    import.meta.url,
  ),
);

/** One line of a service's log: pino writes one JSON object a line on stdout. */
export type LogEntry = Record<string, unknown>;

/**
 * Reads a service's stdout line by line as it comes: `onEntry` gets each line that is a JSON object, `onOther`
 * each line that is not (a crash's stack trace, a message printed before the logger exists), without its newline.
 * A last line without a newline is not read.
 */
export function readJsonLog(
  stdout: Readable | null,
  onEntry: (entry: LogEntry) => void,
  onOther: (line: string) => void = () => undefined,
): void {
  let buffered = "";
  stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl = buffered.indexOf("\n");
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf("\n");
      let entry: unknown;
      try {
        entry = JSON.parse(line);
      } catch {
        onOther(line);
        continue;
      }
      if (typeof entry === "object" && entry !== null && !Array.isArray(entry)) onEntry(entry as LogEntry);
      else onOther(line);
    }
  });
}

/** A service running as its own process, exactly as deployed (used by the demo, the benchmark and the tests). */
export interface Service {
  readonly proc: ChildProcess;
  readonly httpPort: number;
  /** Every JSON log line so far. */
  readonly logs: LogEntry[];
  readonly stderr: () => string;
  /** Sends the signal and resolves with the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

/**
 * Starts `telemetry <command>` and resolves once it logged that it started (with its HTTP port). `prefix` runs it
 * through another program, e.g. `ip netns exec <ns>` (which execs in place, so signals reach the service).
 */
export async function startService(
  command: "gateway" | "processor",
  env: Record<string, string>,
  args: string[] = [],
  prefix: readonly string[] = [],
): Promise<Service> {
  const [file = process.execPath, ...argv] = [...prefix, process.execPath, CLI, command, ...args];
  const proc = spawn(file, argv, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: LogEntry[] = [];
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const started = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not start in 30 s:\n${stderr}`)), 30_000);
    readJsonLog(
      proc.stdout,
      (entry) => {
        logs.push(entry);
        if (entry.msg === `${command} started`) {
          clearTimeout(timer);
          resolve(entry.httpPort as number);
        }
      },
      (line) => {
        stderr += `${line}\n`;
      },
    );
    proc.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited with ${code} before it started:\n${stderr}`));
    });
  });
  const httpPort = await started;
  return {
    proc,
    httpPort,
    logs,
    stderr: () => stderr,
    exited,
    stop: (signal = "SIGTERM") => signalIfRunning(proc, exited, signal),
  };
}

/** Sends `signal` to `proc` unless it has already exited; resolves with its exit code once it has. */
export function signalIfRunning<C>(
  proc: ChildProcess,
  exited: Promise<C>,
  signal: NodeJS.Signals,
): Promise<C> {
  if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
  return exited;
}

const READY_TIMEOUT_MS = 30_000;
const READY_POLL_MS = 50;

/**
 * Resolves once every service answers 200 on /readyz; rejects with the last answer after 30 s. A gateway logs
 * "started" before its MQTT session is up, and readings published before its first subscription exists are not
 * queued for it: whoever publishes right after starting a gateway with a new GATEWAY_ID waits for this first.
 */
export async function untilReady(...services: readonly Service[]): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (const service of services) {
    for (;;) {
      const answer = await fetch(`http://127.0.0.1:${service.httpPort}/readyz`).then(
        async (res) => ({ status: res.status, body: await res.text() }),
        (err: unknown) => ({ status: 0, body: err instanceof Error ? err.message : String(err) }),
      );
      if (answer.status === 200) break;
      if (Date.now() > deadline)
        throw new Error(`not ready within ${READY_TIMEOUT_MS} ms: ${answer.body.trim()}`);
      await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
    }
  }
}

/** Runs `telemetry <args>` to completion and returns its exit code and output. */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    proc.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    proc.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}
