import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
/** Long enough for any test run, short enough that a leaked key is worthless soon. */
const VALID_DAYS = 2;

/** PEM files of a throwaway PKI made with `openssl`: one authority the brokers trust, and a rogue one. */
export interface TestCerts {
  readonly dir: string;
  /** The authority that signed the brokers' and the client's certificates. */
  readonly ca: string;
  /** The brokers' certificate (CN and SAN localhost, SAN IP 127.0.0.1) and key. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** A client certificate the brokers accept (signed by `ca`) and its key. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** Another authority, trusted by nobody: the wrong CA file. */
  readonly rogueCa: string;
  /** A client certificate signed by the rogue authority (the brokers refuse it) and its key. */
  readonly rogueClientCert: string;
  readonly rogueClientKey: string;
  /** Deletes the directory. */
  remove(): void;
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  try {
    await execFileAsync("openssl", args, { cwd: dir });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr || e.message}`);
  }
}

/**
 * Makes, with `openssl` (EC P-256 keys, valid two days), an authority, a broker certificate it signed for
 * localhost/127.0.0.1, a client certificate it signed, and a rogue authority with a client certificate of its own,
 * in a new directory every user can read (private brokers run as the `rabbitmq` and `mosquitto` users).
 */
export async function makeTestCerts(): Promise<TestCerts> {
  const dir = mkdtempSync(join(tmpdir(), "telemetry-certs-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const days = ["-days", String(VALID_DAYS)];
  const ca = async (name: string) =>
    openssl(
      dir,
      "req",
      "-x509",
      ...ec,
      ...days,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.pem`,
      "-subj",
      `/CN=${name}`,
    );
  const signed = async (name: string, by: string, cn: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
    await openssl(dir, "req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
    await openssl(
      dir,
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${by}.pem`,
      "-CAkey",
      `${by}.key`,
      "-CAcreateserial",
      ...days,
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.pem`,
    );
  };
  try {
    await Promise.all([ca("ca"), ca("rogue-ca")]);
    await Promise.all([
      signed(
        "server",
        "ca",
        "localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
      ),
      signed("client", "ca", "telemetry-client", "extendedKeyUsage=clientAuth"),
      signed("rogue-client", "rogue-ca", "telemetry-client", "extendedKeyUsage=clientAuth"),
    ]);
    chmodSync(dir, 0o755);
    for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const at = (f: string) => join(dir, f);
  return {
    dir,
    ca: at("ca.pem"),
    serverCert: at("server.pem"),
    serverKey: at("server.key"),
    clientCert: at("client.pem"),
    clientKey: at("client.key"),
    rogueCa: at("rogue-ca.pem"),
    rogueClientCert: at("rogue-client.pem"),
    rogueClientKey: at("rogue-client.key"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
