import { describe, expect, it } from "vitest";
import { AmqpConfigurationError, brokerAddress, describeAmqpError } from "../../amqp/problems.js";
import { describeQueueMismatch } from "../../amqp/topology.js";

/** amqplib's messages, as it words them (seen against RabbitMQ 3.10). */
const REFUSED_LOGIN =
  'Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."';
const TYPE_MISMATCH =
  "Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message \"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'telemetry.readings.dead' in vhost '/': received 'quorum' but current is 'classic'\"";
const ARG_MISMATCH =
  "Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message \"PRECONDITION_FAILED - inequivalent arg 'x-overflow' for queue 'telemetry.readings' in vhost '/': received the value 'reject-publish' of type 'longstr' but current is none\"";

function withCode(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

describe("saying in one line what is wrong with RabbitMQ", () => {
  it("names the broker by host and port, never with the credentials of the URL", () => {
    expect(brokerAddress("amqp://user:s3cret@rabbit.example:5673/vhost")).toBe("rabbit.example:5673");
    expect(brokerAddress("amqp://user:s3cret@rabbit.example")).toBe("rabbit.example:5672");
    expect(brokerAddress("amqps://user:s3cret@rabbit.example")).toBe("rabbit.example:5671");
  });

  it("a refused login is a mistake to fix in AMQP_URL, retried slowly", () => {
    const p = describeAmqpError(new Error(REFUSED_LOGIN), "h:5672");
    expect(p).toEqual({
      text: expect.stringMatching(/^h:5672 refused the login \(ACCESS_REFUSED\)/),
      mistake: true,
    });
    expect(p.text).toMatch(/password of AMQP_URL/);
  });

  it("a closed port, a hung broker and lost heartbeats are faults retried with backoff", () => {
    expect(describeAmqpError(withCode("connect ECONNREFUSED 127.0.0.1:1", "ECONNREFUSED"), "h:1")).toEqual({
      text: "h:1 refused the connection (ECONNREFUSED: RabbitMQ down or a wrong port)",
      mistake: false,
    });
    expect(describeAmqpError(new Error("connect ETIMEDOUT"), "h:1").text).toMatch(
      /^h:1 did not answer within 10 s \(a hung broker or a network cut\)$/,
    );
    expect(describeAmqpError(new Error("Heartbeat timeout"), "h:1").text).toBe(
      "h:1 stopped answering: no heartbeat (a hung broker or a network cut)",
    );
  });

  it("a certificate refused by TLS is a mistake to fix in the certificate settings", () => {
    const err = withCode("self-signed certificate", "DEPTH_ZERO_SELF_SIGNED_CERT");
    expect(describeAmqpError(err, "h:5671")).toEqual({
      text:
        "h:5671: TLS refused (DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate): check AMQP_CA_FILE, " +
        "AMQP_CERT_FILE and AMQP_KEY_FILE",
      mistake: true,
    });
  });

  it("a connection the broker closed says why, in RabbitMQ's words", () => {
    const forced =
      "Connection closed: 320 (CONNECTION-FORCED) with message \"CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'\"";
    expect(describeAmqpError(new Error(forced), "h:1")).toEqual({
      text: "h:1 closed the connection (CONNECTION_FORCED - broker forced connection closure with reason 'shutdown')",
      mistake: false,
    });
  });

  it("an unknown error keeps amqplib's words after the broker's address", () => {
    expect(describeAmqpError(new Error("something odd"), "h:1")).toEqual({
      text: "h:1: something odd",
      mistake: false,
    });
  });

  it("a configuration error from onConnect is shown as it is", () => {
    expect(describeAmqpError(new AmqpConfigurationError("queue q exists as classic"), "h:1")).toEqual({
      text: "queue q exists as classic",
      mistake: true,
    });
  });
});

describe("a queue that exists with other arguments", () => {
  it("of the other type: says which type it has and both fixes", () => {
    expect(describeQueueMismatch("telemetry.readings", "quorum", TYPE_MISMATCH)).toBe(
      "queue telemetry.readings.dead exists as classic but QUEUE_TYPE is quorum: delete it (after moving its " +
        "messages) so that it is declared again, or set QUEUE_TYPE=classic",
    );
  });

  it("declared without a type (RabbitMQ's default) counts as classic", () => {
    const message = TYPE_MISMATCH.replace(
      "received 'quorum' but current is 'classic'",
      "received 'quorum' but current is none",
    );
    expect(describeQueueMismatch("q", "quorum", message)).toMatch(
      /exists as classic but QUEUE_TYPE is quorum/,
    );
  });

  it("with another argument: names it, what was declared and what the queue has", () => {
    expect(describeQueueMismatch("telemetry.readings", "quorum", ARG_MISMATCH)).toBe(
      "queue telemetry.readings exists with other arguments than this service declares for QUEUE_TYPE=quorum " +
        "(x-overflow: declared the value 'reject-publish' of type 'longstr', the queue has none; declared by another " +
        "version, by hand, or of the other type): delete it (after moving its messages) so that it is declared again",
    );
  });
});
