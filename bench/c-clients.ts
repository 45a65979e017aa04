/**
 * The broker-only baseline a user would try first, with the C clients of Debian's `mosquitto-clients`: one
 * `mosquitto_pub -q 1 -l` process per device and sensor, each fed its readings on stdin from a file, into a
 * Mosquitto, received by one `mosquitto_sub -q 1` on a persistent session. The same publishers, fed the same files,
 * drive the pipeline (see `cPublisherLoad`), so "end to end / broker alone" is a ratio of two figures measured in one
 * run with the same load.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Load } from "./pipeline.js";
import { type UsageReport, UsageSampler } from "./proc.js";
import type { PublisherResult } from "./publisher.js";
import { deviceName, readingValue, sensorName } from "./publisher.js";
import { round } from "./util.js";

const execFileAsync = promisify(execFile);

const PUB = "mosquitto_pub";
const SUB = "mosquitto_sub";
const STALL_MS = 30_000;
const POLL_MS = 250;
const SUBSCRIBE_TIMEOUT_MS = 10_000;
const STDERR_KEPT = 4_096;

/** The readings the C publishers send: the lean publisher's layout (publisher.ts), `seq` = the reading's index. */
export interface CReadings {
  readonly devicePrefix: string;
  readonly devices: number;
  readonly sensors: number;
  readonly total: number;
  readonly baseTs: number;
}

/** One publisher's input: the topic under the phase's prefix (`<prefix>/<suffix>`) and the file of its lines. */
export interface CPublisherInput {
  readonly topicSuffix: string;
  readonly path: string;
}

/** True when `mosquitto_pub` and `mosquitto_sub` can be run (Debian: `apt-get install mosquitto-clients`). */
export async function haveCClients(): Promise<boolean> {
  try {
    await execFileAsync("bash", ["-c", `command -v ${PUB} && command -v ${SUB}`]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes one file per device and sensor into `dir`, one JSON reading a line, holding exactly the readings the lean
 * publisher would send for `r` (reading `i` to key `i % keys`, `ts = baseTs + floor(i / keys)`, the same values), so
 * the exactly-once check of pipeline.ts applies unchanged. `seq` is the reading's index: the C publisher cannot
 * write its publish time, so these runs give no publish-to-commit latency.
 */
export function writeReadingFiles(dir: string, r: CReadings): CPublisherInput[] {
  const keys = r.devices * r.sensors;
  const inputs: CPublisherInput[] = [];
  for (let j = 0; j < keys; j++) {
    const lines: string[] = [];
    for (let i = j; i < r.total; i += keys) {
      lines.push(
        `{"ts":${r.baseTs + Math.floor(i / keys)},"value":${readingValue(i)},"unit":"u","seq":${i}}\n`,
      );
    }
    const topicSuffix = `${deviceName(r.devicePrefix, Math.floor(j / r.sensors))}/${sensorName(j % r.sensors)}`;
    const path = join(dir, `c-publisher-${j}.lines`);
    writeFileSync(path, lines.join(""));
    inputs.push({ topicSuffix, path });
  }
  return inputs;
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

interface Command {
  readonly argv: readonly string[];
  readonly stdin?: string;
  readonly stdout?: string;
}

/**
 * A bash process that starts `commands` when told to, waits for all of them and then stays alive until released,
 * so its children's CPU time (added to its own when it waits for them) can still be read from /proc (see
 * proc.ts `readGroup`).
 */
interface Group {
  readonly pid: number;
  /** Starts the commands. */
  go(): void;
  /** Resolves with the number of commands that exited with a code other than 0, once all have exited. */
  readonly done: Promise<number>;
  /** Lets the shell exit; kills (SIGKILL, by pid) any command still running. */
  release(): Promise<void>;
  stderr(): string;
}

function startGroup(commands: readonly Command[]): Group {
  const lines = ["read -r _ || exit 0"];
  commands.forEach((c, k) => {
    const redirect = `${c.stdin ? ` < ${quote(c.stdin)}` : " < /dev/null"}${c.stdout ? ` > ${quote(c.stdout)}` : ""}`;
    lines.push(`${c.argv.map(quote).join(" ")}${redirect} &`, `p${k}=$!`);
  });
  lines.push("failed=0");
  commands.forEach((_, k) => {
    lines.push(`wait "$p${k}" || failed=$((failed+1))`);
  });
  lines.push('echo "done $failed"', "read -r _");
  const shell = spawn("bash", ["-c", lines.join("\n")], { stdio: ["pipe", "pipe", "pipe"] });
  const pid = shell.pid;
  if (pid === undefined) throw new Error("could not start bash for the C clients");
  let stderr = "";
  shell.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-STDERR_KEPT);
  });
  shell.stdin.on("error", () => undefined);
  const exited = new Promise<void>((resolve) => shell.once("exit", () => resolve()));
  const done = new Promise<number>((resolve, reject) => {
    let out = "";
    shell.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const m = /done (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(() => reject(new Error(`the C clients' shell exited early: ${stderr.trim()}`)));
  });
  done.catch(() => undefined);
  return {
    pid,
    go: () => shell.stdin.write("go\n"),
    done,
    async release() {
      try {
        const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
        for (const child of children.split(/\s+/).filter(Boolean)) process.kill(Number(child), "SIGKILL");
      } catch {
        // The shell is gone already, and its children with it or on their own.
      }
      shell.stdin.end();
      const timer = setTimeout(() => shell.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
    stderr: () => stderr,
  };
}

function hostPort(mqttUrl: string): [string, string] {
  const u = new URL(mqttUrl);
  return [u.hostname, u.port || "1883"];
}

function publishers(mqttUrl: string, topicPrefix: string, clientIdPrefix: string, inputs: CPublisherInput[]) {
  const [host, port] = hostPort(mqttUrl);
  return startGroup(
    inputs.map((input, k) => ({
      argv: [
        PUB,
        ...["-h", host, "-p", port, "-q", "1", "-i", `${clientIdPrefix}-${k}`],
        ...["-t", `${topicPrefix}/${input.topicSuffix}`, "-l"],
      ],
      stdin: input.path,
    })),
  );
}

/**
 * The C publishers as the load of a pipeline phase (runPhase in pipeline.ts). They do not report their PUBACKs
 * while they run; `done` resolves once every one of them has exited (exit code 0: every line published and
 * PUBACKed at QoS 1).
 */
export function cPublisherLoad(o: {
  mqttUrl: string;
  topicPrefix: string;
  clientIdPrefix: string;
  inputs: CPublisherInput[];
  total: number;
}): Load {
  const group = publishers(o.mqttUrl, o.topicPrefix, o.clientIdPrefix, o.inputs);
  let firstPublishAt = 0;
  const done = group.done.then((failed): PublisherResult => {
    const now = Date.now();
    if (failed > 0) process.stderr.write(`bench: ${failed} mosquitto_pub failed: ${group.stderr().trim()}\n`);
    return {
      type: "done",
      sent: o.total,
      acked: failed > 0 ? 0 : o.total,
      failed,
      valueSum: 0,
      firstPublishAt,
      lastPublishAt: now,
      lastAckAt: now,
    };
  });
  return {
    watch: { publisher: { group: group.pid } },
    seqIsPublishTime: false,
    start() {
      firstPublishAt = Date.now();
      group.go();
    },
    acked: () => undefined,
    done,
    stop: () => undefined,
    kill: () => group.release(),
  };
}

/** The broker alone: how fast the C subscriber receives what the C publishers send. */
export interface BrokerBaseline {
  readonly label: string;
  readonly received: number;
  /** First to last message received by mosquitto_sub (its own clock, `-F %U`). */
  readonly seconds: number;
  readonly perSecond: number;
  readonly failedPublishers: number;
  readonly usage: UsageReport;
}

/**
 * Runs the C publishers into the Mosquitto at `mqttUrl` (pid `brokerPid`, sampled) and one `mosquitto_sub -q 1 -c`
 * with a fixed client id: a persistent session (clean session off) that is first created and subscribed by a
 * `mosquitto_sub -E` run, so no message published before the real subscriber connects is lost or downgraded.
 */
export async function brokerBaseline(o: {
  mqttUrl: string;
  brokerPid: number;
  topicPrefix: string;
  runId: string;
  inputs: CPublisherInput[];
  total: number;
  workDir: string;
  cpus: number;
}): Promise<BrokerBaseline> {
  const [host, port] = hostPort(o.mqttUrl);
  const session = ["-h", host, "-p", port, "-q", "1", "-c", "-i", `bench-c-sub-${o.runId}`];
  const filter = ["-t", `${o.topicPrefix}/+/+`];
  await execFileAsync(SUB, [...session, ...filter, "-E"], { timeout: SUBSCRIBE_TIMEOUT_MS });
  const outFile = join(o.workDir, "c-subscriber.out");
  const sub = startGroup([
    { argv: [SUB, ...session, ...filter, "-C", String(o.total), "-F", "%U"], stdout: outFile },
  ]);
  const pubs = publishers(o.mqttUrl, o.topicPrefix, `bench-c-pub-${o.runId}`, o.inputs);
  const sampler = new UsageSampler({
    publisher: { group: pubs.pid },
    subscriber: { group: sub.pid },
    mosquitto: o.brokerPid,
  });
  let usage: UsageReport | undefined;
  try {
    sub.go();
    pubs.go();
    let lastSize = -1;
    let lastChange = Date.now();
    let finished = false;
    void Promise.all([sub.done, pubs.done]).then(() => {
      finished = true;
    });
    while (!finished) {
      await Promise.race([
        Promise.all([sub.done, pubs.done]),
        new Promise((resolve) => setTimeout(resolve, POLL_MS)),
      ]);
      const size = existsSync(outFile) ? statSync(outFile).size : 0;
      if (size !== lastSize) {
        lastSize = size;
        lastChange = Date.now();
      } else if (!finished && Date.now() - lastChange > STALL_MS) {
        throw new Error(
          `broker-only baseline: no message for ${STALL_MS / 1_000} s: ${sub.stderr()} ${pubs.stderr()}`.trim(),
        );
      }
    }
    usage = sampler.stop(o.cpus);
  } finally {
    usage ??= sampler.stop(o.cpus);
    await Promise.all([sub.release(), pubs.release()]);
  }
  const failedPublishers = await pubs.done;
  const failedSubscriber = await sub.done;
  if (failedSubscriber > 0) throw new Error(`mosquitto_sub failed: ${sub.stderr().trim()}`);
  const stamps = readFileSync(outFile, "utf8").split("\n").filter(Boolean).map(Number);
  const first = stamps[0] ?? 0;
  const last = stamps[stamps.length - 1] ?? 0;
  const seconds = Math.max(0.001, last - first);
  return {
    label: "broker only",
    received: stamps.length,
    seconds: round(seconds, 3),
    perSecond: Math.round(stamps.length / seconds),
    failedPublishers,
    usage,
  };
}
