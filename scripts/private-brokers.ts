/**
 * Brokers of a test's or benchmark's own, which it may stop, kill, restart or block without touching the shared
 * brokers on this machine (docs/architecture.md, "Private brokers"), and the one free-port helper. Lives in
 * scripts/ so that it is compiled into dist/ and usable from bench/ as well as from test/. Faults of a private
 * RabbitMQ node (hang, kill, restart) are in `rabbit-faults.ts`, clusters of them in `rabbit-cluster.ts`.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { type Running, running } from "../common/pipeline.js";

const execFileAsync = promisify(execFile);

/** Where private brokers listen unless told otherwise. */
export const DEFAULT_HOST = "127.0.0.1";
const MOSQUITTO_START_TIMEOUT_MS = 10_000;
const MOSQUITTO_STOP_TIMEOUT_MS = 10_000;
/** How long a private RabbitMQ node may take to start, in seconds (`rabbitmqctl ... --timeout` takes seconds). */
export const RABBIT_START_TIMEOUT_S = 60;
/** Erlang distribution port of a private node: its AMQP port plus this. */
const RABBIT_DIST_OFFSET = 20_000;
const RABBIT_PORT_MIN = 20_000;
const RABBIT_PORT_MAX = 45_000;
const STDERR_KEPT = 16_384;
const POLL_MS = 50;

/** True when something accepts TCP connections on host:port. */
export function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** True when host:port can be bound right now. */
function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port on `host` (127.0.0.1 unless given) that the kernel has just handed out as free. Nothing holds it
 * afterwards: bind it soon. Rejects when `host` cannot be bound at all.
 */
export function freePort(host: string = DEFAULT_HOST): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error(`no TCP port on ${host}`))));
    });
  });
}

/** Polls `check` every 50 ms until it is true; rejects with `what` after `timeoutMs`. */
export async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}

/** uid and gid of a system user, or undefined when there is no such user or we cannot give files away. */
async function systemUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync("id", ["-u", name]),
      execFileAsync("id", ["-g", name]),
    ]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return undefined;
  }
}

export interface PrivateMosquittoOptions {
  /** Address to listen on (e.g. a veth address for network-cut tests); 127.0.0.1 unless given. */
  readonly host?: string;
  /** `max_queued_messages`; 0 (no limit, nothing dropped) unless given. */
  readonly maxQueued?: number;
  /** `max_inflight_messages` (0: no limit); Mosquitto's default (20) unless given. */
  readonly maxInflight?: number;
  /** Keep sessions and queued messages across restarts (`persistence true`, saved every second and on exit). */
  readonly persistence?: boolean;
  /** Further `mosquitto.conf` lines, appended as given (e.g. `allow_anonymous false`, `max_qos 0`). */
  readonly extraConfig?: readonly string[];
}

/** A Mosquitto of the caller's own on a port of its own; only this object ever signals its process. */
export interface PrivateMosquitto extends Running {
  /** `mqtt://<host>:<port>` */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Process id of the current broker process (changes with restart). */
  readonly pid: number;
  /** Everything the broker wrote on stderr lately (its log), for diagnostics. */
  readonly log: () => string;
  /** SIGTERM, wait for the exit and delete the broker's directory; a persistent broker saves its state first. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit: what was not saved yet is gone. The directory stays, for `restart()`. */
  kill9(): Promise<void>;
  /** Stops the broker if it runs (SIGTERM), then starts it again on the same port with the same files. */
  restart(): Promise<void>;
}

/**
 * Starts `mosquitto -c FILE` listening on `host` (127.0.0.1) on a free port, with anonymous access,
 * `max_queued_messages` (0 by default), `max_queued_bytes 0` and the options' further lines; with `persistence`,
 * its database lives in the broker's own temporary directory, which `stop()` deletes. Resolves once the port
 * accepts connections; rejects with the broker's log if it exits or does not listen within 10 s.
 */
export async function startPrivateMosquitto(opts: PrivateMosquittoOptions = {}): Promise<PrivateMosquitto> {
  const host = opts.host ?? DEFAULT_HOST;
  const dir = mkdtempSync(join(tmpdir(), "telemetry-mosquitto-"));
  // Started as root, Mosquitto drops to the `mosquitto` user, which must write its persistence file here.
  chmodSync(dir, 0o777);
  const port = await freePort(host);
  const config = join(dir, "mosquitto.conf");
  const lines = [
    `listener ${port} ${host}`,
    "allow_anonymous true",
    `max_queued_messages ${opts.maxQueued ?? 0}`,
    "max_queued_bytes 0",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
  ];
  if (opts.maxInflight !== undefined) lines.push(`max_inflight_messages ${opts.maxInflight}`);
  lines.push(
    ...(opts.persistence ? ["persistence true", `persistence_location ${dir}/`, "autosave_interval 1"] : []),
  );
  lines.push(...(opts.extraConfig ?? []));
  writeFileSync(config, `${lines.join("\n")}\n`);

  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let stderr = "";

  const launch = async () => {
    const child = spawn("mosquitto", ["-c", config], { stdio: ["ignore", "ignore", "pipe"] });
    proc = child;
    let gone = false;
    let spawnError: Error | undefined;
    child.once("error", (err) => {
      spawnError = err;
    });
    exited = new Promise<void>((resolve) =>
      child.once("close", () => {
        gone = true;
        resolve();
      }),
    );
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-STDERR_KEPT);
    });
    try {
      await waitFor(`mosquitto did not open ${host}:${port}`, MOSQUITTO_START_TIMEOUT_MS, async () => {
        if (spawnError) throw new Error(`mosquitto could not be started: ${spawnError.message}`);
        if (gone) throw new Error(`mosquitto exited at start:\n${stderr}`);
        return portOpen(host, port);
      });
    } catch (err) {
      child.kill("SIGKILL");
      throw err;
    }
  };

  const signal = async (sig: NodeJS.Signals) => {
    const child = proc;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(sig);
    const timer = setTimeout(() => child.kill("SIGKILL"), MOSQUITTO_STOP_TIMEOUT_MS);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  };

  try {
    await launch();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const broker = {
    url: `mqtt://${host}:${port}`,
    host,
    port,
    get pid() {
      return proc?.pid ?? -1;
    },
    log: () => stderr,
    kill9: () => signal("SIGKILL"),
    async restart() {
      await signal("SIGTERM");
      await launch();
    },
  };
  return running(broker, async () => {
    try {
      await signal("SIGTERM");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

export interface PrivateRabbitOptions {
  /** Address the AMQP listener binds (e.g. a veth address for network-cut tests); 127.0.0.1 unless given. */
  readonly host?: string;
  /** Further `rabbitmq.conf` lines, appended as given (e.g. `listeners.ssl.default = ...`, `ssl_options.*`). */
  readonly extraConfig?: readonly string[];
}

/** A RabbitMQ node of the caller's own, `t<PORT>@localhost`; only this object ever stops it. */
export interface PrivateRabbit extends Running {
  /** `amqp://guest:guest@<host>:<port>` */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Erlang node name, for `rabbitmqctl -n`. */
  readonly node: string;
  /** How long the node took from `rabbitmq-server -detached` to the rabbit application running. */
  readonly startupMs: number;
  /** `rabbitmqctl stop_app`: the broker closes every connection and its listener; the node stays up. */
  stopApp(): Promise<void>;
  /** `rabbitmqctl start_app` and wait until the application runs and the port accepts connections. */
  startApp(): Promise<void>;
  /** `rabbitmqctl <args>` against this node (e.g. `set_vm_memory_high_watermark`, `list_queues`); its stdout. */
  ctl(...args: string[]): Promise<string>;
  /** `rabbitmqctl stop` (halts the node) and deletes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** Two free ports P and P + 20,000 (AMQP and Erlang distribution), P in [20,000, 45,000). */
async function freeRabbitPort(host: string): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = RABBIT_PORT_MIN + Math.floor(Math.random() * (RABBIT_PORT_MAX - RABBIT_PORT_MIN));
    // The distribution port binds all interfaces.
    if ((await portFree(host, port)) && (await portFree("0.0.0.0", port + RABBIT_DIST_OFFSET))) return port;
  }
  throw new Error("found no free pair of ports for a private RabbitMQ node");
}

/**
 * Starts a RabbitMQ node of its own (docs/architecture.md, "Private brokers"): a directory owned by the
 * `rabbitmq` user holding `rabbitmq.conf` (`listeners.tcp.local = HOST:PORT`, then the options' lines), then
 * `rabbitmq-server -detached` with RABBITMQ_NODENAME=tPORT@localhost and the node's ports and files in that
 * directory. The Debian wrapper runs the server and `rabbitmqctl` as the `rabbitmq` user when called as root, so
 * both use that user's Erlang cookie. Resolves once the rabbit application runs and the port accepts connections
 * (5-10 s); rejects (after halting the node) if it does not start within a minute.
 */
export async function startPrivateRabbit(opts: PrivateRabbitOptions = {}): Promise<PrivateRabbit> {
  const host = opts.host ?? DEFAULT_HOST;
  const port = await freeRabbitPort(host);
  const node = `t${port}@localhost`;
  const dir = mkdtempSync(join(tmpdir(), `telemetry-rabbit-${port}-`));
  chmodSync(dir, 0o755);
  const conf = join(dir, "rabbitmq.conf");
  const pidFile = join(dir, "pid");
  const confLines = [`listeners.tcp.local = ${host}:${port}`, ...(opts.extraConfig ?? [])];
  writeFileSync(conf, `${confLines.join("\n")}\n`);
  writeFileSync(join(dir, "enabled_plugins"), "[].\n");
  const owner = await systemUser("rabbitmq");
  if (owner) for (const p of [dir, conf, join(dir, "enabled_plugins")]) chownSync(p, owner.uid, owner.gid);

  const env = {
    ...process.env,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(port + RABBIT_DIST_OFFSET),
    RABBITMQ_CONFIG_FILE: conf,
    RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
    RABBITMQ_LOG_BASE: join(dir, "log"),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, "enabled_plugins"),
    RABBITMQ_PID_FILE: pidFile,
  };
  const ctl = async (...args: string[]): Promise<string> => {
    try {
      const { stdout } = await execFileAsync("rabbitmqctl", ["-n", node, ...args], { env, timeout: 90_000 });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(
        `rabbitmqctl -n ${node} ${args.join(" ")} failed: ${e.stderr || e.stdout || e.message}`,
      );
    }
  };
  const waitForPort = () =>
    waitFor(`RabbitMQ ${node} did not open ${host}:${port}`, RABBIT_START_TIMEOUT_S * 1_000, () =>
      portOpen(host, port),
    );

  const halt = async () => {
    try {
      await ctl("stop", pidFile);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  const started = Date.now();
  try {
    await execFileAsync("rabbitmq-server", ["-detached"], { env, timeout: 60_000 });
    // `await_startup` fails at once while the node is not up yet; `wait PIDFILE` waits for it to appear.
    await ctl("wait", pidFile, "--timeout", String(RABBIT_START_TIMEOUT_S));
    await waitForPort();
  } catch (err) {
    await halt().catch(() => undefined);
    throw err;
  }
  const startupMs = Date.now() - started;

  const node_ = {
    url: `amqp://guest:guest@${host}:${port}`,
    host,
    port,
    node,
    startupMs,
    ctl,
    async stopApp() {
      await ctl("stop_app");
    },
    async startApp() {
      await ctl("start_app");
      await ctl("await_startup", "--timeout", String(RABBIT_START_TIMEOUT_S));
      await waitForPort();
    },
  };
  return running(node_, halt);
}
