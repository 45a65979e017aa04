/** AMQP 0-9-1 frames read off the wire, for the acknowledgements an AMQP input really sent. */
import { seqOfBody } from "./shared.js";
import type { Observer } from "./tcp-tap.js";

/** AMQP 0-9-1 frames of one direction: type, channel, payload (section 4.2.3 of the specification). */
function amqpFrames(onFrame: (type: number, channel: number, payload: Buffer) => void, header = 0): Observer {
  let buffered = Buffer.alloc(0);
  let skip = header;
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (skip > 0) {
      const n = Math.min(skip, buffered.length);
      buffered = buffered.subarray(n);
      skip -= n;
    }
    while (buffered.length >= FRAME_OVERHEAD) {
      const size = buffered.readUInt32BE(3);
      if (buffered.length < size + FRAME_OVERHEAD) return;
      onFrame(buffered.readUInt8(0), buffered.readUInt16BE(1), buffered.subarray(7, 7 + size));
      buffered = buffered.subarray(size + FRAME_OVERHEAD);
    }
  };
}

/** Frame header (type, channel, size) and end octet. */
const FRAME_OVERHEAD = 8;
/** What a client sends first: `AMQP` 0 0 9 1. */
const PROTOCOL_HEADER = 8;
const METHOD_FRAME = 1;
const BODY_FRAME = 3;
const BASIC = 60;
const BASIC_DELIVER = 60;
const BASIC_ACK = 80;

/**
 * AMQP: each `basic.ack` the client sends (one tag, or with `multiple` every tag up to it), as the items of the
 * `basic.deliver`s it settles on that channel.
 */
export function basicAcks(acked: number[]): { fromClient: Observer; fromBroker: Observer } {
  /** Per channel: delivery tag to item, in tag order; and the tag whose body is being read. */
  const unacked = new Map<number, Map<number, number>>();
  const reading = new Map<number, { tag: number; body: Buffer[] }>();
  const channel = (ch: number) => {
    const tags = unacked.get(ch) ?? new Map<number, number>();
    unacked.set(ch, tags);
    return tags;
  };
  const fromBroker = amqpFrames((type, ch, payload) => {
    if (
      type === METHOD_FRAME &&
      payload.readUInt16BE(0) === BASIC &&
      payload.readUInt16BE(2) === BASIC_DELIVER
    ) {
      const consumerTagLength = payload.readUInt8(4);
      reading.set(ch, { tag: Number(payload.readBigUInt64BE(5 + consumerTagLength)), body: [] });
    } else if (type === BODY_FRAME) {
      // The test's bodies are short: one body frame each.
      const delivery = reading.get(ch);
      if (!delivery) return;
      reading.delete(ch);
      channel(ch).set(delivery.tag, seqOfBody(payload));
    }
  });
  const fromClient = amqpFrames((type, ch, payload) => {
    if (type !== METHOD_FRAME || payload.readUInt16BE(0) !== BASIC || payload.readUInt16BE(2) !== BASIC_ACK)
      return;
    const tag = Number(payload.readBigUInt64BE(4));
    const multiple = (payload.readUInt8(12) & 1) === 1;
    const tags = channel(ch);
    for (const [t, seq] of tags) {
      if (t === tag || (multiple && t < tag)) {
        acked.push(seq);
        tags.delete(t);
      }
    }
  }, PROTOCOL_HEADER);
  return { fromClient, fromBroker };
}
