/** A TCP proxy in front of a broker that shows a part's traffic: the acknowledgements the broker really got. */
import { connect, createServer, type Server, type Socket } from "node:net";
import type { InputDownstream } from "../delivery-suite.js";

/** Reads one direction of a proxied connection. */
export type Observer = (chunk: Buffer) => void;

/**
 * A TCP proxy in front of a broker that shows each connection's bytes to `observe` (client to broker, broker to
 * client) before passing them on: the acknowledgements the broker really got, in wire order.
 */
export interface Tap {
  /** `host:port` to point the part at. */
  readonly address: string;
  /** Items acknowledged on the wire, in order. */
  readonly acked: number[];
  /** Client connections open through the tap. */
  open(): number;
  close(): void;
}

/** Starts a tap in front of `target` (`host:port`) on a free local port; `observe` reads each new connection. */
export async function startTap(
  target: string,
  observe: (acked: number[]) => { fromClient: Observer; fromBroker: Observer },
): Promise<Tap> {
  const { hostname, port } = new URL(target);
  const acked: number[] = [];
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  const server: Server = createServer((client) => {
    const broker = connect(Number(port), hostname);
    const seen = observe(acked);
    client.on("data", (chunk: Buffer) => {
      seen.fromClient(chunk);
      broker.write(chunk);
    });
    broker.on("data", (chunk: Buffer) => {
      seen.fromBroker(chunk);
      client.write(chunk);
    });
    clients.add(client);
    for (const [socket, other] of [
      [client, broker],
      [broker, client],
    ] as const) {
      sockets.add(socket);
      socket.on("error", () => undefined);
      // Closed gracefully, not destroyed: what one side wrote last (the acks of a stop) still reaches the other, as
      // it would without the tap.
      socket.on("close", () => {
        sockets.delete(socket);
        if (socket === client) clients.delete(client);
        other.end();
      });
    }
  });
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("tap has no TCP address");
  return {
    address: `127.0.0.1:${address.port}`,
    acked,
    open: () => clients.size,
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/**
 * The part of an input's rig that the suite's downstream and a tap on the input's broker connection answer: what
 * arrived, what was acknowledged on the wire, refusing and accepting, and whether the input let go of its broker.
 */
export function tappedInput<T>(downstream: InputDownstream<T>, tap: Tap) {
  return {
    arrived: async () => downstream.arrived,
    acked: () => tap.acked,
    refuse: async () => downstream.hold(),
    accept: async () => downstream.release(),
    refusalSeen: () => downstream.held > 0,
    released: async () => tap.open() === 0,
    violations: (): string[] => [],
  };
}
