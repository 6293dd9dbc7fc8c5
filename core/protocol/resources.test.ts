import assert from "node:assert/strict";
import { describe, it, test } from "node:test";
import { connectNats, displayUrls } from "./resources.js";

describe("connectNats", () => {
  it("rejects an unreadable credentials file with its file-system error, before connecting", async () => {
    await assert.rejects(
      // Port 1 on loopback: were a connection attempted, the error would be a connection error.
      connectNats("nats://127.0.0.1:1", "test", { credentialsFile: "/nonexistent/nats.creds" }),
      (error: unknown) => (error as { code?: string }).code === "ENOENT",
    );
  });
});

test("displayUrls hides a user and password in a NATS URL", () => {
  assert.equal(
    displayUrls(["nats://alice:s3cret@nats.example:4222", "tls://nats.example:4222"]),
    "nats://***@nats.example:4222,tls://nats.example:4222",
  );
});
