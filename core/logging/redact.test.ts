import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, test } from "node:test";
import pino from "pino";
import { redact, SECRET_KEYS } from "./redact.js";

/** Logs obj through pino with fedtrain's redaction and returns the JSON line. */
function logged(obj: object): string {
  let out = "";
  const sink = new Writable({
    write(chunk, _, done) {
      out += String(chunk);
      done();
    },
  });
  pino({ redact }, sink).info(obj, "line");
  return out;
}

describe("log redaction", () => {
  test("no secret survives at any depth, in plain objects and in errors", () => {
    const secrets: string[] = [];
    const secret = () => {
      const value = `s3cr3t-${secrets.length}-${Math.random().toString(36).slice(2)}`;
      secrets.push(value);
      return value;
    };
    const error = Object.assign(new Error("request failed"), {
      response: { headers: { authorization: `Bearer ${secret()}`, cookie: secret() } },
      body: { kind: "Secret", stringData: { "nats.creds": secret() }, data: { key: secret() } },
    });
    const line = logged({
      token: secret(),
      credentials: secret(),
      privateKey: secret(),
      member: { privateKeyPem: secret(), seed: secret() },
      config: { nats: { auth: { password: secret(), creds: secret() } } },
      deep: { a: { b: { c: { d: { token: secret() } } } } },
      err: error,
    });
    for (const value of secrets) assert.ok(!line.includes(value), `${value} leaked: ${line}`);
    assert.match(line, /\[redacted\]/);
    // What is not secret stays readable.
    assert.match(line, /request failed/);
    assert.match(line, /"kind":"Secret"/);
  });

  test("every key is covered at the top level", () => {
    const obj = Object.fromEntries(SECRET_KEYS.map((k) => [k, `value-of-${k}`]));
    const line = logged(obj);
    for (const k of SECRET_KEYS) assert.ok(!line.includes(`value-of-${k}`), k);
  });
});
