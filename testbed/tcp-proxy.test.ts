import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { TcpProxy } from "./tcp-proxy.js";

/** An echo server on a free port. */
async function echoServer(): Promise<net.Server> {
  const server = net.createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** What comes back on socket within ms. */
async function reply(socket: net.Socket, text: string, ms = 300): Promise<string> {
  let received = "";
  const onData = (chunk: Buffer) => {
    received += chunk.toString();
  };
  socket.on("data", onData);
  socket.write(text);
  await sleep(ms);
  socket.off("data", onData);
  return received;
}

test("the proxy forwards, drops everything silently while cut, and closes old connections when restored", async () => {
  const server = await echoServer();
  const { port } = server.address() as net.AddressInfo;
  const proxy = await TcpProxy.start(`nats://127.0.0.1:${port}`);
  const before = await connect(proxy.port);
  assert.equal(await reply(before, "one"), "one");

  proxy.cut();
  let closed = false;
  before.on("close", () => {
    closed = true;
  });
  assert.equal(await reply(before, "two"), "", "nothing passes while cut");
  assert.equal(closed, false, "and nothing tells the client");
  const during = await connect(proxy.port);
  assert.equal(await reply(during, "three"), "", "a new connection hangs");

  proxy.restore();
  await sleep(100);
  assert.equal(closed, true, "the connection from before the cut is closed");
  const after = await connect(proxy.port);
  assert.equal(await reply(after, "four"), "four");
  after.destroy();
  await proxy.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
