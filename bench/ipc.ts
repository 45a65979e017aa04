import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The entry point of every benchmark child process (publisher, reference pipeline parts). */
const WORKER = fileURLToPath(new URL("./worker.js", import.meta.url));

/** A message between the benchmark and one of its child processes. */
export interface WorkerMessage {
  readonly type: string;
  readonly [key: string]: unknown;
}

/** A child process of the benchmark: it says "ready", may send "progress", and ends with "done". */
export interface Worker<Done> {
  readonly pid: number;
  readonly ready: Promise<WorkerMessage>;
  readonly done: Promise<Done>;
  /** The last "progress" message, if any. */
  latest(): WorkerMessage | undefined;
  send(message: WorkerMessage): void;
  /** Ends the process by its pid (SIGKILL) if it still runs. */
  kill(): Promise<void>;
}

/** Forks `worker.js <role> <config as JSON>`. */
export function forkWorker<Done>(role: string, config: unknown): Worker<Done> {
  const child: ChildProcess = fork(WORKER, [role, JSON.stringify(config)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: [],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start the ${role} process`);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let latest: WorkerMessage | undefined;
  let readyResolve!: (m: WorkerMessage) => void;
  let doneResolve!: (d: Done) => void;
  const ready = new Promise<WorkerMessage>((resolve) => {
    readyResolve = resolve;
  });
  const done = new Promise<Done>((resolve) => {
    doneResolve = resolve;
  });
  let settled = false;
  child.on("message", (raw) => {
    const m = raw as WorkerMessage;
    if (m.type === "ready") readyResolve(m);
    else if (m.type === "progress") latest = m;
    else if (m.type === "done") {
      settled = true;
      doneResolve(m as unknown as Done);
    }
  });
  const failed = exited.then((code) => {
    if (!settled) throw new Error(`the ${role} process exited with ${code} before it finished`);
    return undefined as never;
  });
  const readyOrFailed = Promise.race([ready, failed]);
  const doneOrFailed = Promise.race([done, failed]);
  // Both fail when the process dies first; a caller may await only one of them.
  for (const p of [failed, readyOrFailed, doneOrFailed]) p.catch(() => undefined);
  return {
    pid,
    ready: readyOrFailed,
    done: doneOrFailed,
    latest: () => latest,
    send: (message) => {
      if (child.connected) child.send(message);
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Child side: sends a message to the benchmark. */
export function tell(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      resolve();
      return;
    }
    process.send(message, undefined, undefined, () => resolve());
  });
}

/** Child side: resolves with the first message of `type` from the benchmark. */
export function heard(type: string): Promise<WorkerMessage> {
  return new Promise((resolve) => {
    const on = (raw: unknown) => {
      const m = raw as WorkerMessage;
      if (m.type !== type) return;
      process.off("message", on);
      resolve(m);
    };
    process.on("message", on);
  });
}
