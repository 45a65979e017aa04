import { describe, expect, it } from "vitest";
import { securityWarnings } from "../../ops/check-warnings.js";

describe("telemetry check's security warnings", () => {
  it("warns about RabbitMQ's guest user on a host that is not loopback, named or implied", () => {
    expect(securityWarnings("processor", { amqpUrl: "amqp://guest:guest@rabbitmq:5672" })).toEqual([
      expect.stringMatching(/^RabbitMQ user guest on rabbitmq:/),
    ]);
    expect(securityWarnings("processor", { amqpUrl: "amqp://10.0.0.5:5672" })).toHaveLength(1);
    expect(
      securityWarnings("processor", { amqpUrl: "amqp://u:p@h1:5672,amqp://guest:guest@h2:5672" }),
    ).toEqual([expect.stringMatching(/on h2:/)]);
    expect(securityWarnings("processor", { amqpUrl: "amqp://guest:guest@127.0.0.1:5672" })).toEqual([]);
    expect(securityWarnings("processor", { amqpUrl: "amqps://telemetry:pw@rabbitmq:5671" })).toEqual([]);
  });

  it("warns about an MQTT broker reached without credentials", () => {
    expect(securityWarnings("gateway", { mqttUrl: "mqtt://mosquitto:1883" })).toEqual([
      expect.stringMatching(/anonymous/),
    ]);
    expect(securityWarnings("gateway", { mqttUrl: "mqtt://gw:pw@mosquitto:1883" })).toEqual([]);
    expect(securityWarnings("gateway", { mqttUrl: "mqtt://mosquitto:1883", mqttUsername: "gw" })).toEqual([]);
    expect(securityWarnings("gateway", { mqttUrl: "mqtts://m:8883", mqttCertFile: "/c.pem" })).toEqual([]);
  });

  it("warns about serve beyond loopback without TLS, or open on purpose", () => {
    expect(securityWarnings("serve", { host: "0.0.0.0", tokens: ["t"] })).toEqual([
      expect.stringMatching(/without TLS/),
    ]);
    expect(securityWarnings("serve", { host: "0.0.0.0", auth: "none", tlsCertFile: "/c.pem" })).toEqual([
      expect.stringMatching(/SERVE_AUTH=none/),
    ]);
    expect(securityWarnings("serve", { host: "0.0.0.0", tlsCertFile: "/c.pem" })).toEqual([]);
    expect(securityWarnings("serve", { host: "127.0.0.1" })).toEqual([]);
    expect(securityWarnings("serve", { host: "::1" })).toEqual([]);
  });
});
