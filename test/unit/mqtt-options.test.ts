import { describe, expect, it } from "vitest";
import { silentLogger } from "../../common/log.js";
import type { MqttInputOptions } from "../../mqtt/input.js";
import { resolveOptions } from "../../mqtt/options.js";
import { subackFailure } from "../../mqtt/protocol.js";
import { describeReason } from "../../mqtt/reasons.js";
import { parseBrokerUrl } from "../../mqtt/url.js";

const VALID: MqttInputOptions = {
  url: "mqtt://127.0.0.1:1883",
  clientId: "telemetry-gateway-a",
  topic: "sensors/+/+",
  receiveMaximum: 1_000,
  keepaliveSeconds: 30,
  sessionExpirySeconds: 604_800,
  log: silentLogger(),
};

describe("MQTT broker URL", () => {
  it("takes host, port and percent-decoded credentials, and shows only host:port", () => {
    expect(parseBrokerUrl("mqtt://gw%40site:p%3Ass@broker.example:8883")).toEqual({
      host: "broker.example",
      port: 8_883,
      tls: false,
      username: "gw@site",
      password: "p:ss",
      display: "broker.example:8883",
    });
  });

  it("defaults to port 1883, accepts tcp:// and IPv6 literals", () => {
    expect(parseBrokerUrl("tcp://localhost")).toMatchObject({
      host: "localhost",
      port: 1_883,
      username: undefined,
    });
    expect(parseBrokerUrl("mqtt://[::1]:1884")).toMatchObject({
      host: "::1",
      port: 1_884,
      display: "[::1]:1884",
    });
  });

  it("refuses other schemes and non-URLs without repeating a password", () => {
    expect(() => parseBrokerUrl("amqp://u:secret@host")).toThrow(
      'MQTT URL scheme "amqp:" is not supported (use mqtt://, tcp:// or mqtts://)',
    );
    expect(() => parseBrokerUrl("u:secret@host:1883")).toThrow(/^MQTT URL scheme/);
    let message = "";
    try {
      parseBrokerUrl("mqtt://u:secret@host:notaport");
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toBe("MQTT URL is not a URL (expected mqtt://host:port)");
  });
});

describe("MQTT input options", () => {
  it("fills in the connect timeout and the reconnect backoff", () => {
    expect(resolveOptions(VALID)).toMatchObject({
      connectTimeoutMs: 10_000,
      reconnectMinMs: 200,
      reconnectMaxMs: 15_000,
      broker: { display: "127.0.0.1:1883" },
    });
  });

  it("subscribes further filters alike, shared when the topic is", () => {
    const extraTopics = ["spBv1.0/g/NDATA/+"];
    expect(resolveOptions({ ...VALID, extraTopics }).extraTopics).toEqual(["spBv1.0/g/NDATA/+"]);
    expect(resolveOptions({ ...VALID, extraTopics, shareGroup: "gw" })).toMatchObject({
      topic: "$share/gw/sensors/+/+",
      extraTopics: ["$share/gw/spBv1.0/g/NDATA/+"],
    });
  });

  it.each([
    [{ receiveMaximum: 0 }, "receiveMaximum must be an integer from 1 to 65535, got 0"],
    [{ receiveMaximum: 65_536 }, "receiveMaximum must be an integer from 1 to 65535, got 65536"],
    [{ keepaliveSeconds: 1.5 }, "keepaliveSeconds must be an integer from 0 to 65535, got 1.5"],
    [{ connectTimeoutMs: 0 }, "connectTimeoutMs must be an integer from 1"],
    [{ reconnectMinMs: 500, reconnectMaxMs: 100 }, "reconnectMaxMs must be an integer from 500"],
    [{ clientId: "" }, "clientId must not be empty"],
    [{ topic: "" }, "topic must not be empty"],
    [{ extraTopics: ["spBv1.0/g/NDATA/+", ""] }, "topic must not be empty"],
  ])("refuses %o, naming the option", (override, message) => {
    expect(() => resolveOptions({ ...VALID, ...override })).toThrow(message);
  });
});

describe("MQTT reason codes", () => {
  it("prints a code with its name, and says when it does not know one", () => {
    expect(describeReason(0x87)).toBe("0x87 (Not authorized)");
    expect(describeReason(0x05)).toBe("0x05 (unknown reason code)");
  });

  it("a SUBACK granting QoS 1 or 2 is the subscription; QoS 0 or a failure code is not", () => {
    expect(subackFailure(1, "s/+/+")).toBeUndefined();
    expect(subackFailure(2, "s/+/+")).toBeUndefined();
    expect(subackFailure(0, "s/+/+")).toBe('subscription to "s/+/+" failed: the broker granted only QoS 0');
    expect(subackFailure(0x87, "s/+/+")).toBe(
      'subscription to "s/+/+" failed: the broker refused it: reason 0x87 (Not authorized)',
    );
  });
});
