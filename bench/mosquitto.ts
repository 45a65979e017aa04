import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { createServer, connect as netConnect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 3_000;

/** A Mosquitto of the benchmark's own; `stop()` ends it by its process id. */
export interface PrivateMosquitto {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** A TCP port free at the time of asking. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return address.port;
}

async function accepts(port: number): Promise<boolean> {
  const socket = netConnect(port, "127.0.0.1");
  try {
    await Promise.race([
      once(socket, "connect"),
      sleep(500).then(() => Promise.reject(new Error("timeout"))),
    ]);
    return true;
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

/**
 * Starts `mosquitto -c <dir>/mosquitto.conf` on a free port: no queue limits (the machine's broker drops QoS 1
 * messages beyond 1,000 queued for a slow subscriber), no in-flight limit, no persistence. Resolves once it accepts
 * connections.
 */
export async function startMosquitto(dir: string): Promise<PrivateMosquitto> {
  const port = await freePort();
  const config = join(dir, `mosquitto-${port}.conf`);
  await writeFile(
    config,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      "max_queued_messages 0",
      "max_queued_bytes 0",
      "max_inflight_messages 0",
      "persistence false",
      "log_dest stderr",
      "log_type error",
      "",
    ].join("\n"),
  );
  const proc: ChildProcess = spawn("mosquitto", ["-c", config], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const spawnError = new Promise<never>((_, reject) => proc.once("error", reject));
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`mosquitto exited with ${proc.exitCode}: ${stderr}`);
    if (await Promise.race([accepts(port), spawnError])) break;
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`mosquitto did not listen on ${port} within ${START_TIMEOUT_MS} ms: ${stderr}`);
    }
    await sleep(50);
  }
  const pid = proc.pid;
  if (pid === undefined) throw new Error("mosquitto has no pid");
  return {
    url: `mqtt://127.0.0.1:${port}`,
    pid,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}
