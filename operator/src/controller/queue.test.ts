import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ExponentialBackoff, MaxOf, TokenBucket, WorkQueue } from "./queue.js";

describe("WorkQueue", () => {
  test("a key queued twice is handed out once", async () => {
    const queue = new WorkQueue();
    queue.add("a");
    queue.add("b");
    queue.add("a");
    assert.equal(queue.length, 2);
    assert.equal(await queue.get(), "a");
    assert.equal(await queue.get(), "b");
    assert.equal(queue.length, 0);
  });

  test("a key added while processed comes back after done, never to two workers", async () => {
    const queue = new WorkQueue();
    queue.add("a");
    const key = await queue.get();
    queue.add("a");
    assert.equal(queue.length, 0, "not handed out while processing");
    queue.done(key ?? "");
    assert.equal(queue.length, 1);
    assert.equal(await queue.get(), "a");
  });

  test("a waiting worker gets the next key", async () => {
    const queue = new WorkQueue();
    const waiting = queue.get();
    queue.add("x");
    assert.equal(await waiting, "x");
  });

  test("addAfter delays, and the earliest pending delay wins", async () => {
    const queue = new WorkQueue();
    queue.addAfter("slow", 200);
    queue.addAfter("slow", 20);
    queue.addAfter("slow", 500);
    assert.equal(queue.length, 0);
    await sleep(60);
    assert.equal(queue.length, 1);
  });

  test("release wakes idle workers without closing; shutdown closes", async () => {
    const queue = new WorkQueue();
    const idle = queue.get();
    queue.release();
    assert.equal(await idle, undefined);
    queue.add("still-open");
    assert.equal(await queue.get(), "still-open");
    queue.shutdown();
    assert.equal(await queue.get(), undefined);
    queue.add("ignored");
    assert.equal(queue.length, 0);
  });

  test("addRateLimited backs off per key until forgotten", () => {
    const delays: number[] = [];
    const limiter = new ExponentialBackoff(5, 1000);
    for (let i = 0; i < 10; i++) delays.push(limiter.when("k"));
    assert.deepEqual(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    assert.equal(limiter.retries("k"), 10);
    assert.equal(limiter.when("other"), 5, "keys back off independently");
    limiter.forget("k");
    assert.equal(limiter.when("k"), 5);
  });

  test("the token bucket limits retries overall once its burst is spent", () => {
    let now = 0;
    const bucket = new TokenBucket(10, 3, () => now);
    assert.deepEqual([bucket.when(), bucket.when(), bucket.when()], [0, 0, 0]);
    assert.equal(bucket.when(), 100);
    assert.equal(bucket.when(), 200);
    now = 1000;
    assert.equal(bucket.when(), 0, "refilled after a second");
  });

  test("MaxOf takes the longest delay", () => {
    let now = 0;
    const limiter = new MaxOf(new ExponentialBackoff(5, 1000), new TokenBucket(10, 1, () => now));
    assert.equal(limiter.when("a"), 5);
    assert.equal(limiter.when("b"), 100);
    now = 10_000;
    assert.equal(limiter.when("a"), 10);
  });
});
