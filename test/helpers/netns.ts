/**
 * Network namespaces for network-cut tests: a service runs in a namespace of its own, joined to the host by a veth
 * pair, and the test drops its packets to a broker (no RST, no ICMP) so that only heartbeats and keepalives can
 * tell the link is gone. Needs root, `ip` (iproute2) and `iptables`; `requireNetns()` says plainly what is missing.
 */
import { execFile } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { promisify } from "node:util";
import { type Running, running } from "../../common/pipeline.js";

const execFileAsync = promisify(execFile);

/** Namespaces are 10.<200..249>.<0..255>.<4k>/30; host end .1 of the /30, namespace end .2. */
const SUBNET_SECOND_OCTET_MIN = 200;
const SUBNET_SECOND_OCTET_SPAN = 50;
const SUBNETS_PER_OCTET = 64;
const ADDRESS_ATTEMPTS = 20;
const COMMAND_TIMEOUT_MS = 10_000;

async function run(cmd: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, { timeout: COMMAND_TIMEOUT_MS });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${(e.stderr || e.message).trim()}`);
  }
}

/**
 * Rejects with one clear line when this machine cannot run network-cut tests (not root, no `ip netns`, no
 * `iptables`), so that such a test fails loudly instead of passing without having cut anything.
 */
export async function requireNetns(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error("network-cut tests need root (ip netns, veth, iptables); run them as root");
  const probe = `tlm-probe-${randomBytes(3).toString("hex")}`;
  try {
    await run("ip", ["netns", "add", probe]);
  } catch (err) {
    throw new Error(`network-cut tests need \`ip netns\` (iproute2, network namespaces): ${String(err)}`);
  }
  try {
    await run("ip", ["netns", "exec", probe, "iptables", "-w", "-S", "OUTPUT"]);
  } catch (err) {
    throw new Error(`network-cut tests need iptables (apt-get install -y iptables): ${String(err)}`);
  } finally {
    await run("ip", ["netns", "del", probe]).catch(() => undefined);
  }
}

/** A network namespace of the test's own with a veth pair to the host; `stop()` deletes both. */
export interface Netns extends Running {
  readonly name: string;
  /** The host's end of the veth pair: brokers the namespace must reach listen here. */
  readonly hostAddress: string;
  /** The namespace's end: a service inside listening on 0.0.0.0 is reached here from the host. */
  readonly address: string;
  /** Prepended to a command line, runs it inside the namespace: `ip netns exec <name>`. */
  readonly exec: readonly string[];
  /**
   * Drops every TCP packet to and from `port` on the host, inside the namespace and in both directions: no RST,
   * no ICMP, the peers see silence. The namespace's other traffic (its HTTP endpoint, other brokers) flows on.
   */
  cut(port: number): Promise<void>;
  /** Removes every cut: the packets TCP retransmits get through again. */
  heal(): Promise<void>;
}

function addressesInUse(): Promise<string> {
  return run("ip", ["-4", "-o", "addr", "show"]);
}

/**
 * Creates namespace `tlm-<label>-<random>` with loopback up, a veth pair with its own /30 (host end `.1`, namespace
 * end `.2`) and a default route through the host end, so the namespace reaches every address of the host (and so
 * brokers bound to another namespace's host end). Half-built state is removed when a step fails.
 */
export async function startNetns(label: string): Promise<Netns> {
  const tag = randomBytes(3).toString("hex");
  const name = `tlm-${label}-${tag}`;
  // Interface names are at most 15 characters.
  const hostIf = `tlm${tag}h`;
  const nsIf = `tlm${tag}n`;
  const inUse = await addressesInUse();
  let prefix: string | undefined;
  for (let i = 0; i < ADDRESS_ATTEMPTS && prefix === undefined; i++) {
    const second = SUBNET_SECOND_OCTET_MIN + randomInt(SUBNET_SECOND_OCTET_SPAN);
    const third = randomInt(256);
    const fourth = randomInt(SUBNETS_PER_OCTET) * 4;
    const candidate = `10.${second}.${third}.`;
    if (!inUse.includes(`${candidate}${fourth + 1}/`) && !inUse.includes(`${candidate}${fourth + 2}/`))
      prefix = `${candidate}${fourth}`;
  }
  if (prefix === undefined) throw new Error("found no free /30 in 10.200.0.0/11 for a test namespace");
  const base = prefix.split(".");
  const last = Number(base[3]);
  const hostAddress = `${base[0]}.${base[1]}.${base[2]}.${last + 1}`;
  const address = `${base[0]}.${base[1]}.${base[2]}.${last + 2}`;

  const ipt = (...args: string[]) => run("ip", ["netns", "exec", name, "iptables", "-w", ...args]);
  const rules = new Set<number>();
  const ruleArgs = (port: number) => [
    ["OUTPUT", "-p", "tcp", "--dport", String(port), "-j", "DROP"],
    ["INPUT", "-p", "tcp", "--sport", String(port), "-j", "DROP"],
  ];

  await run("ip", ["netns", "add", name]);
  const remove = async () => {
    // Deleting the namespace destroys its veth end, and with it the host end.
    await run("ip", ["netns", "del", name]);
  };
  try {
    await run("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", name]);
    await run("ip", ["addr", "add", `${hostAddress}/30`, "dev", hostIf]);
    await run("ip", ["link", "set", hostIf, "up"]);
    await run("ip", ["-n", name, "addr", "add", `${address}/30`, "dev", nsIf]);
    await run("ip", ["-n", name, "link", "set", nsIf, "up"]);
    await run("ip", ["-n", name, "link", "set", "lo", "up"]);
    await run("ip", ["-n", name, "route", "add", "default", "via", hostAddress]);
  } catch (err) {
    await remove().catch(() => undefined);
    throw err;
  }

  const netns = {
    name,
    hostAddress,
    address,
    exec: ["ip", "netns", "exec", name] as const,
    async cut(port: number) {
      if (rules.has(port)) return;
      for (const rule of ruleArgs(port)) await ipt("-I", ...rule);
      rules.add(port);
    },
    async heal() {
      for (const port of rules) for (const rule of ruleArgs(port)) await ipt("-D", ...rule);
      rules.clear();
    },
  };
  return running(netns, remove);
}
