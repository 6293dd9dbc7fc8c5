import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ControlState } from "./control.js";
import { ProtocolMessageError } from "./errors.js";
import { equalBytes, generateKeyPair } from "./identity.js";
import type { ControlMessage } from "./types.js";
import { encodeControl } from "./wire.js";

const organiser = generateKeyPair();
const state = () =>
  new ControlState({ isOrganiser: (key) => equalBytes(key, organiser.publicKey) });
let sequence = 0;
const message = (
  action: ControlMessage["action"],
  memberId = "",
  signer = organiser,
  at = ++sequence,
) =>
  encodeControl({ action, memberId, sequence: at, issuedAtMs: at, reason: "r" }, signer.privateKey);

describe("the organisers' control state", () => {
  test("exclusions hold across pauses until the member is readmitted", () => {
    const control = state();
    control.apply(message("exclude", "mallory"));
    control.apply(message("exclude", "eve"));
    control.apply(message("pause"));
    control.apply(message("resume"));
    assert.equal(control.paused, false);
    assert.deepEqual([...control.excluded.keys()], ["mallory", "eve"]);
    control.apply(message("readmit", "eve"));
    assert.equal(control.isExcluded("mallory"), true);
    assert.equal(control.isExcluded("eve"), false);
  });

  test("a replayed or foreign message changes nothing", () => {
    const control = state();
    const exclude = message("exclude", "mallory");
    control.apply(exclude);
    control.apply(message("readmit", "mallory"));
    const reason = (data: Uint8Array) => {
      try {
        control.apply(data);
      } catch (error) {
        return error instanceof ProtocolMessageError ? error.reason : String(error);
      }
      return "applied";
    };
    assert.equal(reason(exclude), "replayed");
    assert.equal(reason(message("exclude", "alpha", generateKeyPair())), "unknown-key");
    assert.equal(control.isExcluded("mallory"), false);
    assert.equal(control.isExcluded("alpha"), false);
  });
});
