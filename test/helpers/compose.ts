/** Reading the Compose files as Docker Compose does, and running the CLI with no variables of the test's own. */
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { CLI } from "../../scripts/spawn.js";

/** The repository's root, where the Compose files are. */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** A service's secrets as `docker-compose config` writes them. */
export type SecretRef = { source: string; target?: string } | string;

/** The fields of a Compose service the tests read. */
export interface ComposeService {
  build?: unknown;
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: { target: number; published: string | number }[] | string[];
  healthcheck?: { test: string[] };
  restart?: string;
  hostname?: string;
  depends_on?: Record<string, unknown>;
  stop_grace_period?: string;
  stop_signal?: string;
  volumes?: ({ source?: string; target: string } | string)[];
  secrets?: SecretRef[];
  expose?: (string | number)[];
}

/** A Compose file as `docker-compose config` writes it: its services and the secrets they may mount. */
export interface ComposeFile {
  services: Record<string, ComposeService>;
  secrets?: Record<string, { file: string }>;
}

/** Compose v1 writes a volume as "source:target:mode", the Compose specification as {source, target}. */
export function volumes(s: ComposeService | undefined): { source?: string; target: string }[] {
  return (s?.volumes ?? []).map((v) => {
    if (typeof v !== "string") return v;
    const [source, target = ""] = v.split(":");
    return source === undefined ? { target } : { source, target };
  });
}

/** `docker-compose config` writes "9464:9464" as {target, published}. */
export function ports(s: ComposeService): { target: number; published: number }[] {
  return (s.ports ?? []).map((p) =>
    typeof p === "string"
      ? { target: Number(p.split(":")[1]), published: Number(p.split(":")[0]) }
      : { target: Number(p.target), published: Number(p.published) },
  );
}

/**
 * `file` (relative to the root) as Docker Compose reads it (`docker-compose config`, Debian's package), as JSON.
 * With `env`, Compose sees only PATH and those variables; without, the test's whole environment.
 */
export function composeConfig(file: string, env?: Record<string, string>): ComposeFile {
  const yaml = execFileSync("docker-compose", ["-f", `${ROOT}${file}`, "config"], {
    encoding: "utf8",
    ...(env === undefined ? {} : { env: { PATH: process.env.PATH ?? "", ...env } }),
  });
  const json = execFileSync(
    "python3",
    ["-c", "import sys, yaml, json; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
    { input: yaml, encoding: "utf8" },
  );
  return JSON.parse(json);
}

/** Runs the built CLI with exactly `env` (no variables of the test's own) and returns its output. */
export function cleanCli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", ...env },
    encoding: "utf8",
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
