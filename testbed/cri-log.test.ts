import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CriLogDecoder } from "./cri-log.js";

describe("CriLogDecoder", () => {
  it("returns full records as lines, joins partial ones and waits for a record's end", () => {
    const decoder = new CriLogDecoder();
    const t = "2026-12-05T01:00:00.123456789Z";
    assert.equal(
      decoder.push(`${t} stdout F {"round":1}\n${t} stderr F warn\n`),
      '{"round":1}\nwarn\n',
    );
    assert.equal(decoder.push(`${t} stdout P abc`), "");
    assert.equal(decoder.push(`\n${t} stdout P def\n${t} stdout F ghi`), "");
    assert.equal(decoder.push("\n"), "abcdefghi\n");
    assert.equal(decoder.push(`${t} stdout F \n`), "\n");
  });

  it("skips what is not a CRI record", () => {
    assert.equal(new CriLogDecoder().push("not a record\n"), "");
  });
});
