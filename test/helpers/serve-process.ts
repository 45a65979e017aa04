import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

/** The built CLI: run `npm run build` first. */
const CLI = "dist/cli/telemetry.js";

/** A `telemetry serve` process spawned from dist/, its log, and its resident memory. */
export interface ServeProcess {
  readonly url: string;
  readonly proc: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  log(): string;
  /** Resident set size, MB, from /proc/<pid>/status. */
  rssMb(): number;
  stop(): Promise<void>;
}

/** What a process that refused to start left: its exit code and stderr. */
export interface Refused {
  readonly code: number | null;
  readonly stderr: string;
}

function spawnServe(
  env: Record<string, string>,
  args: readonly string[],
): { proc: ChildProcess; out: () => string } {
  const proc = spawn(process.execPath, [CLI, "serve", "--port", "0", ...args], {
    env: { ...process.env, HTTP_HOST: "127.0.0.1", LOG_LEVEL: "info", SERVE_TOKEN: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  return { proc, out: () => out };
}

/** Starts serve with `env` on top of this process's; resolves once it logs its URL, rejects if it exits first. */
export async function startServeProcess(
  env: Record<string, string>,
  args: readonly string[] = [],
): Promise<ServeProcess> {
  const { proc, out } = spawnServe(env, args);
  const url = await new Promise<string>((resolve, reject) => {
    const look = () => {
      const line = out()
        .split("\n")
        .find((l) => l.includes('"url"'));
      if (line !== undefined) {
        clearInterval(timer);
        clearTimeout(giveUp);
        resolve((JSON.parse(line) as { url: string }).url);
      }
    };
    const timer = setInterval(look, 50);
    const giveUp = setTimeout(() => {
      clearInterval(timer);
      proc.kill("SIGKILL");
      reject(new Error(`serve logged no URL in 30 s (LOG_LEVEL must be info or debug): ${out()}`));
    }, 30_000);
    proc.once("exit", (code) => {
      clearTimeout(giveUp);
      clearInterval(timer);
      reject(new Error(`serve exited (${code}) before listening: ${out()}`));
    });
  });
  return {
    url,
    proc,
    log: out,
    rssMb: () => {
      const status = readFileSync(`/proc/${proc.pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
    },
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = once(proc, "exit");
      proc.kill("SIGTERM");
      await exited;
    },
  };
}

/** Runs serve expecting it to refuse its settings: its exit code and stderr (it is killed if it starts). */
export async function serveRefusal(
  env: Record<string, string>,
  args: readonly string[] = [],
): Promise<Refused> {
  const { proc, out } = spawnServe(env, args);
  const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
  const [code] = (await once(proc, "exit")) as [number | null];
  clearTimeout(timer);
  return { code, stderr: out() };
}

/** An HTTP answer read whole. */
export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/**
 * One request with node:http(s), which, unlike fetch, may set `Host` and send HEAD as it is. `ca` trusts a test
 * authority for https URLs.
 */
export function ask(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; ca?: string } = {},
): Promise<Answer> {
  const u = new URL(url);
  const send = u.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      u,
      {
        method: opts.method ?? "GET",
        headers: opts.headers,
        ...(opts.ca ? { ca: opts.ca } : {}),
        agent: false,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}
