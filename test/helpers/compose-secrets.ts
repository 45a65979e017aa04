import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { ROOT, type SecretRef } from "./compose.js";

/** Makes the secrets with deploy/make-secrets.sh, as a user does before the first start: their folder. */
export function makeComposeSecrets(): string {
  const dir = join(mkdtempSync(join(tmpdir(), "compose-secrets-")), "secrets");
  execFileSync("sh", [`${ROOT}deploy/make-secrets.sh`, dir], { encoding: "utf8" });
  return dir;
}

/** Where a secret is mounted in its container: its absolute target, else /run/secrets/<target or name>. */
export function secretPath(ref: SecretRef): string {
  const { source, target } = typeof ref === "string" ? { source: ref, target: undefined } : ref;
  return target?.startsWith("/") ? target : `/run/secrets/${target ?? source}`;
}

/**
 * A service's environment as its container sees it, for `telemetry check` on this machine: each value that is the
 * mount path of one of the service's secrets becomes the file make-secrets.sh wrote in `dir`.
 */
export function withSecrets(
  svc: { environment?: Record<string, string>; secrets?: SecretRef[] },
  declared: Record<string, { file: string }> | undefined,
  dir: string,
): Record<string, string> {
  const mounted = new Map(
    (svc.secrets ?? []).map((ref) => {
      const source = typeof ref === "string" ? ref : ref.source;
      return [secretPath(ref), join(dir, basename(declared?.[source]?.file ?? ""))];
    }),
  );
  return Object.fromEntries(Object.entries(svc.environment ?? {}).map(([k, v]) => [k, mounted.get(v) ?? v]));
}
