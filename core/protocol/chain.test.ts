import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type CommitSpec,
  commitEntry,
  commitSpecHash,
  signedCommits,
} from "../../test/fixtures/commits.js";
import { type ChainKeys, type ChainLink, type ChainRules, CommitChain } from "./chain.js";
import { generateKeyPair, type KeyPair } from "./identity.js";
import type { CommitEntry } from "./types.js";

const alpine = generateKeyPair();
const birch = generateKeyPair();
const cedarOld = generateKeyPair();
const cedarNew = generateKeyPair();
const stranger = generateKeyPair();

const entry = commitEntry;

const link = (signer: KeyPair, coordinator: string, ...entries: CommitEntry[]): CommitSpec => ({
  signer,
  coordinator,
  entries,
});

const open: ChainRules = { entryKeys: "registered" };

/** Keys as a verifier or worker would know them: a policy (allowlist) and registered keys. */
function keys(registered: Record<string, KeyPair>, allowlist?: Record<string, KeyPair>): ChainKeys {
  return {
    allows: (memberId, key) =>
      !allowlist || allowlist[memberId]?.publicKey.every((b, i) => b === key[i]) === true,
    registered: (memberId) => registered[memberId]?.publicKey,
  };
}

const everyone = { alpine, birch, cedar: cedarNew };

/** Scores of round `round` for these members' w0 workers (values do not matter to the chain). */
const scored = (round: number, ...members: string[]) => ({
  round,
  updates: members.map((memberId) => ({
    memberId,
    workerId: "w0",
    bound: "kept" as const,
    cosine: 1,
    relativeDistance: 0,
    relativeNorm: 1,
  })),
});

interface Case {
  name: string;
  links: CommitSpec[];
  keys: ChainKeys;
  rules?: ChainRules;
  /** Whether the links are history (read at start) or seen live. */
  history?: boolean;
  /** Feed these links instead of `signedCommits(links)` (to replay or reorder). */
  feed?: (chain: ChainLink[]) => ChainLink[];
  /** The first refused link (index into what is fed) and its reason, or none. */
  want: { at: number; reason: string; message: RegExp } | undefined;
}

const cases: Case[] = [
  {
    name: "an honest chain is accepted",
    links: [link(alpine, "alpine", entry("alpine", alpine)), link(birch, "birch")],
    keys: keys(everyone),
    want: undefined,
  },
  {
    name: "a replayed commit is refused as replayed",
    links: [link(alpine, "alpine"), link(birch, "birch")],
    keys: keys(everyone),
    feed: (c) => [c[0]!, c[1]!, c[1]!],
    want: { at: 2, reason: "replayed", message: /round 2 follows round 2/ },
  },
  {
    name: "a commit that skips a round is refused",
    links: [link(alpine, "alpine"), link(birch, "birch"), link(alpine, "alpine")],
    keys: keys(everyone),
    feed: (c) => [c[0]!, c[2]!],
    want: { at: 1, reason: "malformed", message: /round 3 follows round 1/ },
  },
  {
    name: "a commit naming another previous hash breaks the chain",
    links: [
      link(alpine, "alpine"),
      { ...link(birch, "birch"), change: { prevHash: new Uint8Array(32).fill(1) } },
    ],
    keys: keys(everyone),
    want: { at: 1, reason: "malformed", message: /previous-commit hash/ },
  },
  {
    name: "a signer outside the allowlist is refused",
    links: [link(stranger, "alpine")],
    keys: keys({}, { alpine }),
    want: { at: 0, reason: "unknown-key", message: /not allowlisted for member alpine/ },
  },
  {
    name: "live: a coordinator signing with another key than its registered one is refused",
    links: [link(cedarOld, "cedar")],
    keys: keys(everyone),
    history: false,
    want: { at: 0, reason: "unknown-key", message: /not member cedar's registered key/ },
  },
  {
    name: "history: a member's earlier key stands until its registered key appears",
    links: [
      link(cedarOld, "cedar", entry("cedar", cedarOld)),
      link(alpine, "alpine", entry("cedar", cedarNew)),
    ],
    keys: keys(everyone),
    want: undefined,
  },
  {
    name: "history: the earlier key is refused once the registered key signed",
    links: [link(cedarNew, "cedar"), link(cedarOld, "cedar")],
    keys: keys(everyone),
    want: { at: 1, reason: "unknown-key", message: /not member cedar's registered key/ },
  },
  {
    name: "history: an entry with the earlier key after the registered key appeared is refused",
    links: [
      link(alpine, "alpine", entry("cedar", cedarNew)),
      link(alpine, "alpine", entry("cedar", cedarOld)),
    ],
    keys: keys(everyone),
    want: { at: 1, reason: "unknown-key", message: /cedar.w0 carries an unknown key/ },
  },
  {
    name: "live (entry keys by policy): an entry's unregistered key is taken on the commit's word",
    links: [link(alpine, "alpine", entry("cedar", cedarOld))],
    keys: keys(everyone),
    rules: { entryKeys: "policy" },
    history: false,
    want: undefined,
  },
  {
    name: "live (entry keys by policy): an entry outside the allowlist is refused",
    links: [link(alpine, "alpine", entry("birch", stranger))],
    keys: keys(everyone, everyone),
    rules: { entryKeys: "policy" },
    history: false,
    want: { at: 0, reason: "unknown-key", message: /birch.w0 carries an unknown key/ },
  },
  {
    name: "entries out of canonical order are refused",
    links: [link(alpine, "alpine", entry("birch", birch), entry("alpine", alpine))],
    keys: keys(everyone),
    want: { at: 0, reason: "malformed", message: /canonical order/ },
  },
  {
    name: "two entries of one worker are refused (not strictly ordered)",
    links: [link(alpine, "alpine", entry("alpine", alpine), entry("alpine", alpine))],
    keys: keys(everyone),
    want: { at: 0, reason: "malformed", message: /canonical order/ },
  },
  {
    name: "with a spec hash, a commit under another spec is refused",
    links: [{ ...link(alpine, "alpine"), change: { specHash: new Uint8Array(32) } }],
    keys: keys(everyone),
    rules: { specHash: commitSpecHash, entryKeys: "registered" },
    want: { at: 0, reason: "spec-mismatch", message: /another federation spec hash/ },
  },
  {
    name: "scores of earlier rounds, each round scored once, are accepted",
    links: [
      link(alpine, "alpine", entry("alpine", alpine)),
      { ...link(alpine, "alpine"), change: { scores: [scored(1, "alpine")] } },
      link(alpine, "alpine"),
      { ...link(alpine, "alpine"), change: { scores: [scored(2), scored(3)] } },
    ],
    keys: keys(everyone),
    want: undefined,
  },
  {
    name: "scores of the commit's own round are refused",
    links: [{ ...link(alpine, "alpine"), change: { scores: [scored(1)] } }],
    keys: keys(everyone),
    want: { at: 0, reason: "malformed", message: /scores of round 1 in round 1's commit/ },
  },
  {
    name: "a round scored a second time is refused",
    links: [
      link(alpine, "alpine"),
      { ...link(alpine, "alpine"), change: { scores: [scored(1)] } },
      { ...link(alpine, "alpine"), change: { scores: [scored(1)] } },
    ],
    keys: keys(everyone),
    want: { at: 2, reason: "malformed", message: /after scores of round 1/ },
  },
  {
    name: "scores out of canonical order are refused",
    links: [
      link(alpine, "alpine"),
      { ...link(alpine, "alpine"), change: { scores: [scored(1, "birch", "alpine")] } },
    ],
    keys: keys(everyone),
    want: { at: 1, reason: "malformed", message: /scores of round 1 are not in canonical order/ },
  },
  {
    name: "an unregistered member's key is checked by the policy alone",
    links: [link(stranger, "dahlia", entry("dahlia", stranger))],
    keys: keys(everyone),
    want: undefined,
  },
];

describe("the commit-chain rule", () => {
  for (const c of cases)
    test(c.name, () => {
      const fed = (c.feed ?? ((x) => x))(signedCommits(c.links));
      const chain = new CommitChain(c.keys, c.rules ?? open);
      const refusals: { at: number; reason: string; message: string }[] = [];
      fed.forEach((one, at) => {
        const violation = chain.check(one, c.history ?? true);
        if (violation) refusals.push({ at, ...violation });
        else chain.append(one);
      });
      const first = refusals[0];
      assert.equal(first?.at, c.want?.at);
      assert.equal(first?.reason, c.want?.reason);
      if (c.want) assert.match(first?.message ?? "", c.want.message);
    });

  test("a deregistered member's earlier key may stand again in history", () => {
    const chain = new CommitChain(keys(everyone), open);
    const [first, second] = signedCommits([link(cedarNew, "cedar"), link(cedarOld, "cedar")]);
    chain.append(first!);
    assert.ok(chain.check(second!, true));
    chain.forget("cedar");
    assert.equal(chain.check(second!, true), undefined);
  });

  test("the head is the SHA-256 of the last commit's bytes", () => {
    const chain = new CommitChain(keys(everyone), open);
    assert.equal(chain.headHex, undefined);
    const [first, second] = signedCommits([link(alpine, "alpine"), link(birch, "birch")]);
    chain.append(first!);
    assert.deepEqual(second!.commit.prevHash, chain.head);
  });
});
