import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { freePort } from "./process.js";

test("freePort hands out each port once, and each is free to listen on", async () => {
  const ports: number[] = [];
  for (let i = 0; i < 200; i++) ports.push(await freePort());
  assert.equal(new Set(ports).size, ports.length, "no port handed out twice");
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(ports.at(-1), "127.0.0.1", resolve);
  });
  await new Promise((resolve) => server.close(resolve));
});
