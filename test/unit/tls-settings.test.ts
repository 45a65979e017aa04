import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { describeAmqpError } from "../../amqp/problems.js";
import { amqpSecurity, certKeyProblem, securityProblem, tlsFileSettings } from "../../common/settings.js";
import { describeTlsError, parsePemFile, readTls } from "../../common/tls.js";
import { parseBrokerUrl } from "../../mqtt/url.js";

/** An error as Node's TLS layer raises it: a message and a code. */
const tlsError = (message: string, code: string) => Object.assign(new Error(message), { code });

const dir = mkdtempSync(join(tmpdir(), "telemetry-tls-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("TLS refusals, as operators read them", () => {
  it("a broker certificate we do not trust names the CA file", () => {
    const err = tlsError("unable to verify the first certificate", "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    expect(describeTlsError(err, "MQTT")).toBe(
      "TLS: the broker's certificate is not trusted (UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first " +
        "certificate): check MQTT_CA_FILE",
    );
    expect(
      describeTlsError(tlsError("Hostname/IP does not match", "ERR_TLS_CERT_ALTNAME_INVALID"), "AMQP"),
    ).toMatch(/not trusted .*check AMQP_CA_FILE$/);
  });

  it("our client certificate refused by the broker names the certificate and key files, in one line", () => {
    const err = tlsError(
      "808CAD07077F0000:error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:rec_layer_s3.c:1601:SSL alert number 48\n",
      "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
    );
    expect(describeTlsError(err, "MQTT")).toBe(
      "TLS: the broker refused our client certificate (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA): check MQTT_CERT_FILE and " +
        "MQTT_KEY_FILE",
    );
    const amqp = describeAmqpError(err, "h:5671");
    expect(amqp).toEqual({
      text: "h:5671: TLS refused (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA): check AMQP_CA_FILE, AMQP_CERT_FILE and AMQP_KEY_FILE",
      mistake: true,
    });
  });

  it("an AMQP broker certificate signed by an unknown authority is a TLS refusal, retried slowly", () => {
    const err = tlsError("unable to verify the first certificate", "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    expect(describeAmqpError(err, "h:5671")).toMatchObject({
      text: expect.stringMatching(/TLS refused/),
      mistake: true,
    });
  });

  it("errors that are not TLS errors are left to the caller", () => {
    expect(describeTlsError(tlsError("connect ECONNREFUSED", "ECONNREFUSED"), "MQTT")).toBeUndefined();
    expect(describeTlsError(new Error("no code"), "MQTT")).toBeUndefined();
  });
});

describe("TLS settings", () => {
  it("mqtts:// is TLS on port 8883 unless the URL gives one", () => {
    expect(parseBrokerUrl("mqtts://broker.example")).toMatchObject({ tls: true, port: 8_883 });
    expect(parseBrokerUrl("mqtts://broker.example:9883")).toMatchObject({ tls: true, port: 9_883 });
    expect(parseBrokerUrl("mqtt://broker.example")).toMatchObject({ tls: false, port: 1_883 });
  });

  it("TLS files with a plain URL, or a certificate without its key, are refused in one line", () => {
    expect(securityProblem({ mqttUrl: "mqtt://h:1883", mqttCaFile: "/ca.pem" })).toBe(
      "MQTT_CA_FILE set but MQTT_URL is not mqtts://: the connection would not use TLS; use mqtts://host:port",
    );
    expect(
      securityProblem({ amqpUrl: "amqps://u:p@h1:5671,amqp://u:p@h2:5672", amqpCaFile: "/ca.pem" }),
    ).toMatch(/^AMQP_CA_FILE set but AMQP_URL is not amqps:\/\//);
    expect(securityProblem({ mqttUrl: "mqtts://h", mqttCertFile: "/c.pem" })).toBe(
      "MQTT_CERT_FILE and MQTT_KEY_FILE go together: set both for a client certificate, or neither",
    );
    expect(
      securityProblem({
        mqttUrl: "mqtts://h",
        mqttCaFile: "/ca.pem",
        mqttCertFile: "/c.pem",
        mqttKeyFile: "/c.key",
        amqpUrl: "amqps://u:p@h1:5671,amqps://u:p@h2:5671",
        amqpCaFile: "/ca.pem",
      }),
    ).toBeUndefined();
    expect(securityProblem({ mqttUrl: "mqtt://h", amqpUrl: "amqp://h" })).toBeUndefined();
  });

  it("one helper names a group's file settings from its prefix, for a broker's client files or a server's own", () => {
    const serve = tlsFileSettings("serveTls", { cert: "the certificate", key: "its key" });
    expect(Object.keys(serve)).toEqual(["serveTlsCertFile", "serveTlsKeyFile"]);
    expect(serve.serveTlsCertFile).toMatchObject({ flag: "serve-tls-cert-file", env: "SERVE_TLS_CERT_FILE" });
    expect(serve.serveTlsKeyFile).toMatchObject({ flag: "serve-tls-key-file", env: "SERVE_TLS_KEY_FILE" });
    expect(Object.values(amqpSecurity).map((s) => s.env)).toEqual([
      "AMQP_CA_FILE",
      "AMQP_CERT_FILE",
      "AMQP_KEY_FILE",
    ]);
    expect(certKeyProblem("SERVE_TLS", { keyFile: "/k.pem" }, "server")).toBe(
      "SERVE_TLS_CERT_FILE and SERVE_TLS_KEY_FILE go together: set both for a server certificate, or neither",
    );
    expect(certKeyProblem("SERVE_TLS", { certFile: "/c.pem", keyFile: "/k.pem" }, "server")).toBeUndefined();
  });

  it("a PEM file setting must be readable and hold a PEM block, and is read once into Buffers", () => {
    const pem = join(dir, "ca.pem");
    writeFileSync(pem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    const notPem = join(dir, "ca.txt");
    writeFileSync(notPem, "hello");
    expect(parsePemFile(pem)).toBe(pem);
    expect(() => parsePemFile(notPem)).toThrow("must be a PEM file (-----BEGIN ...)");
    expect(() => parsePemFile(join(dir, "missing.pem"))).toThrow("cannot read the file (ENOENT)");
    expect(readTls({ caFile: pem })).toEqual({ ca: readFileSync(pem) });
    expect(readTls({})).toEqual({});
  });
});
