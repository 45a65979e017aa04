import { generate, parser } from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { pubackPackets } from "../../mqtt/protocol.js";

describe("pubackPackets", () => {
  it("is byte for byte what mqtt-packet generates for each PUBACK with reason 0, in order", () => {
    const ids = [1, 2, 255, 256, 258, 65_535];
    const expected = Buffer.concat(
      ids.map((messageId) => generate({ cmd: "puback", messageId, reasonCode: 0 }, { protocolVersion: 5 })),
    );
    expect(pubackPackets(ids).equals(expected)).toBe(true);
  });

  it("parses back as one PUBACK per id, success, in order", () => {
    const seen: { cmd: string; messageId?: number; reasonCode?: number }[] = [];
    const p = parser({ protocolVersion: 5 });
    p.on("packet", (packet) => seen.push(packet as (typeof seen)[number]));
    p.parse(pubackPackets([7, 300, 9]));
    expect(seen.map((x) => [x.cmd, x.messageId, x.reasonCode ?? 0])).toEqual([
      ["puback", 7, 0],
      ["puback", 300, 0],
      ["puback", 9, 0],
    ]);
  });

  it("is empty for no ids", () => {
    expect(pubackPackets([]).length).toBe(0);
  });
});
