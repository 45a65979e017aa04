/**
 * Faults of a private RabbitMQ node (`startPrivateRabbit`) as the fault tests inject them: its Erlang VM hung with
 * SIGSTOP, killed with SIGKILL as a crash would, and started again on the same directory.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { promisify } from "node:util";
import { type PrivateRabbit, portOpen, RABBIT_START_TIMEOUT_S, waitFor } from "./private-brokers.js";

const execFileAsync = promisify(execFile);

/** The operating-system process of a private RabbitMQ node's Erlang VM, and what starting that node again needs. */
export interface RabbitVm {
  readonly pid: number;
  /** The node's RABBITMQ_* environment (name, ports, config, data directory, pid file), read from the VM itself. */
  readonly env: Readonly<Record<string, string>>;
}

/** How long a SIGKILLed VM may take to be gone and its listener closed. */
const RABBIT_KILL_TIMEOUT_MS = 10_000;

/**
 * The Erlang VM of a running private node (`rabbitmqctl eval 'os:getpid().'`), to hang or kill it as a fault
 * would. Its environment comes from /proc, so `restartRabbit` can start the node again on the same directory.
 */
export async function rabbitVm(rabbit: PrivateRabbit): Promise<RabbitVm> {
  const pid = Number(JSON.parse((await rabbit.ctl("eval", "os:getpid().")).trim()));
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no Erlang VM pid for ${rabbit.node}`);
  const env: Record<string, string> = {};
  for (const entry of readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")) {
    const eq = entry.indexOf("=");
    if (entry.startsWith("RABBITMQ_") && eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  if (env.RABBITMQ_NODENAME !== rabbit.node)
    throw new Error(`process ${pid} is not the VM of ${rabbit.node}`);
  return { pid, env };
}

/**
 * SIGSTOP: the node hangs without dying. Its sockets stay open and the kernel still completes new TCP connections
 * into the listener's backlog, but nothing answers: only heartbeats and timeouts can tell. `resumeRabbit` undoes it.
 */
export function hangRabbit(vm: RabbitVm): void {
  process.kill(vm.pid, "SIGSTOP");
}

/** SIGCONT: a node hung by `hangRabbit` runs on from where it stopped. */
export function resumeRabbit(vm: RabbitVm): void {
  process.kill(vm.pid, "SIGCONT");
}

/**
 * SIGKILL the VM, as a crash or the OOM killer would: no clean shutdown, connections reset by the kernel. Resolves
 * once the process is gone and the node's port refuses connections.
 */
export async function killRabbit(rabbit: PrivateRabbit, vm: RabbitVm): Promise<void> {
  process.kill(vm.pid, "SIGKILL");
  await waitFor(`the VM of ${rabbit.node} (pid ${vm.pid}) did not go`, RABBIT_KILL_TIMEOUT_MS, async () => {
    return !existsSync(`/proc/${vm.pid}`) && !(await portOpen(rabbit.host, rabbit.port));
  });
}

/**
 * Starts a node killed by `killRabbit` again on the same directory (its durable queues and their messages on disk
 * come back) with the same name and ports; resolves with the new VM once the rabbit application runs and the port
 * accepts connections. `rabbit.stop()` still halts it and deletes the directory.
 */
export async function restartRabbit(rabbit: PrivateRabbit, vm: RabbitVm): Promise<RabbitVm> {
  const env = { ...process.env, ...vm.env };
  const pidFile = vm.env.RABBITMQ_PID_FILE;
  if (!pidFile) throw new Error(`no RABBITMQ_PID_FILE in the environment of ${rabbit.node}`);
  // The killed VM left its pid file behind; `rabbitmqctl wait` would wait on that dead pid.
  rmSync(pidFile, { force: true });
  await execFileAsync("rabbitmq-server", ["-detached"], { env, timeout: 60_000 });
  await execFileAsync(
    "rabbitmqctl",
    ["-n", rabbit.node, "wait", pidFile, "--timeout", String(RABBIT_START_TIMEOUT_S)],
    { env, timeout: 90_000 },
  );
  await rabbit.ctl("await_startup", "--timeout", String(RABBIT_START_TIMEOUT_S));
  await waitFor(
    `RabbitMQ ${rabbit.node} did not open ${rabbit.host}:${rabbit.port}`,
    RABBIT_START_TIMEOUT_S * 1_000,
    () => portOpen(rabbit.host, rabbit.port),
  );
  return rabbitVm(rabbit);
}
