import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import net from "node:net";
import { test } from "node:test";
import { natsServerBinary, startNatsServer } from "../../testbed/nats.js";
import { freePort } from "../../testbed/process.js";

// The test bed's nats-server helper, on a real server (provisioned by `npm test`).

function infoLine(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("error", reject);
    socket.once("data", (data) => {
      socket.destroy();
      resolve(data.toString("utf8"));
    });
  });
}

test("starts, restarts on the same port and store, and stops cleanly", async () => {
  const server = await startNatsServer({ binary: await natsServerBinary() });
  try {
    const info = JSON.parse((await infoLine(server.port)).slice(5)) as {
      max_payload: number;
      jetstream: boolean;
      port: number;
    };
    assert.equal(info.max_payload, 8 * 1024 * 1024);
    assert.equal(info.jetstream, true);
    assert.equal(info.port, server.port);
    assert.equal(server.url, `nats://127.0.0.1:${server.port}`);
    await server.restart();
    assert.match(await infoLine(server.port), /^INFO /);
    assert.ok(existsSync(server.storeDir));
  } finally {
    await server.stop();
  }
  assert.equal(existsSync(server.storeDir), false);
  await assert.rejects(infoLine(server.port));
  await server.stop();
});

test("freePort returns a port nothing listens on", async () => {
  const port = await freePort();
  assert.ok(port > 0 && port < 65536);
  await assert.rejects(infoLine(port));
});
