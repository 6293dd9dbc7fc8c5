import assert from "node:assert/strict";
import { test } from "node:test";
import { apiTime, apiTimeMicro } from "./time.js";

test("apiTime drops the fractional seconds", () => {
  assert.equal(apiTime(new Date("2026-11-26T10:00:01.234Z")), "2026-11-26T10:00:01Z");
});

test("apiTimeMicro has exactly six fractional digits", () => {
  assert.equal(apiTimeMicro(new Date("2026-11-26T10:00:01.234Z")), "2026-11-26T10:00:01.234000Z");
});
