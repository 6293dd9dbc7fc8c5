import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CONTROL_MAX_AGE_MS, CONTROL_MAX_SKEW_MS, ControlState } from "./control.js";
import { ProtocolMessageError } from "./errors.js";
import { equalBytes, generateKeyPair, type KeyPair } from "./identity.js";
import type { ControlMessage } from "./types.js";
import { encodeControl } from "./wire.js";

const organisers = [generateKeyPair(), generateKeyPair()];
const state = () =>
  new ControlState({
    isOrganiser: (key) => organisers.some((o) => equalBytes(key, o.publicKey)),
  });
/** The server's clock when it stores the next message. */
const now = 1_800_000_000_000;
let sequence = 0;
const message = (
  action: ControlMessage["action"],
  memberId = "",
  signer: KeyPair = organisers[0]!,
  at = ++sequence,
  issuedAtMs = now,
) => encodeControl({ action, memberId, sequence: at, issuedAtMs, reason: "r" }, signer.privateKey);

/** What applying data does: "applied", or the reason it is dropped. */
function verdict(control: ControlState, data: Uint8Array, storedAtMs = now): string {
  try {
    control.apply(data, storedAtMs);
  } catch (error) {
    return error instanceof ProtocolMessageError ? error.reason : String(error);
  }
  return "applied";
}

describe("the organisers' control state", () => {
  test("exclusions hold across pauses until the member is readmitted", () => {
    const control = state();
    control.apply(message("exclude", "mallory"), now);
    control.apply(message("exclude", "eve"), now);
    control.apply(message("pause"), now);
    control.apply(message("resume"), now);
    assert.equal(control.paused, false);
    assert.deepEqual([...control.excluded.keys()], ["mallory", "eve"]);
    control.apply(message("readmit", "eve"), now);
    assert.equal(control.isExcluded("mallory"), true);
    assert.equal(control.isExcluded("eve"), false);
  });

  test("a replayed or foreign message changes nothing", () => {
    const control = state();
    const exclude = message("exclude", "mallory");
    control.apply(exclude, now);
    control.apply(message("readmit", "mallory"), now);
    assert.equal(verdict(control, exclude), "replayed");
    assert.equal(verdict(control, message("exclude", "alpha", generateKeyPair())), "unknown-key");
    assert.equal(control.isExcluded("mallory"), false);
    assert.equal(control.isExcluded("alpha"), false);
  });

  test("sequences are per organiser: one whose clock is behind is not refused as a replay", () => {
    const control = state();
    assert.equal(verdict(control, message("pause", "", organisers[0], 5_000)), "applied");
    assert.equal(verdict(control, message("resume", "", organisers[1], 10)), "applied");
    assert.equal(control.paused, false);
    assert.equal(verdict(control, message("pause", "", organisers[1], 10)), "replayed");
  });

  test("a stale message is refused by every reader, however fresh the reader's state", () => {
    // An old signed pause, stored again long after it was issued: a worker that starts after the
    // original left the stream has seen no sequence of this organiser, and still refuses it.
    const old = message("pause", "", organisers[0], ++sequence, now - CONTROL_MAX_AGE_MS - 1);
    assert.equal(verdict(state(), old), "replayed");
    assert.equal(verdict(state(), old, now - 2), "applied", "within the window when first stored");
    const ahead = message("pause", "", organisers[0], ++sequence, now + CONTROL_MAX_SKEW_MS + 1);
    assert.equal(verdict(state(), ahead), "malformed");
    const control = state();
    verdict(control, old);
    assert.equal(control.paused, false);
  });
});
