// `npm run bench -- poisoning [--quick] [--attack NAME,...] [--codec dense|topk] [--setting 1/4|2/7]
// [--rule NAME,...] [--backend WASM|JS|CPU|WebGPU|CUDA|Auto]`: what poisoning members do to a
// federation's model under each aggregation rule. A CharTransformer on Arithmetic (the diloco
// benchmark's task and inner optimiser) trained by n in-process workers for 30 rounds of 10 inner
// steps, f of them attackers: 1 of 4 and 2 of 7. Attacks crafted from what every member can see in
// a round (an omniscient attacker; the honest updates decoded): sign-flip ×10 of the attacker's
// own update ("signFlip10"); "A Little Is Enough" (ALIE, the honest mean − z × their standard
// deviation per coordinate, z = 1 and 1.5); inner-product manipulation (IPM, −ε × the honest mean,
// ε = 0.1 and 10); and a member training on corrupted data (random targets, "wrongData"). Rules:
// the mean, the median, the trimmed mean tolerating f, the trimmed mean behind a norm bound (drop
// above 3 × the median norm), centred clipping from the previous aggregate with a radius of
// 2 × the median distance, and for top-k updates the median and trimmed mean counting only the
// updates that sent each coordinate (`sparse`), alone and behind the norm bound. Codecs: dense
// fp32 and top-k 5 % 4-bit with error feedback. Every row stands beside the clean run of its
// setting and codec (no attacker, the mean; attack "none"), the honest members alone (attack
// "absent", the mean) and the task's loss levels (unigram: a model that learned nothing useful;
// the best possible). With --attack / --codec / --setting / --rule only those rows run (the
// record says which). About 27 s a run at 1/4 and 50 s at 2/7 on 2 cores; `--merge A.json,B.json`
// combines the records of parts run side by side. Writes bench/results/poisoning.json (through
// run.ts) and bench/results/poisoning.png (a grid of every row against its clean run); --quick runs
// 3 rounds into out/bench/poisoning-quick.json and .png.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  type AggregationRule,
  type CodecParams,
  decodeUpdate,
  encodeUpdate,
  type NormBound,
} from "../core/codec/index.js";
import { repoRoot } from "../scripts/repository.js";
import { type BackendChoice, initBackend } from "../trainer-image/training/backend.js";
import type { CommittedUpdate } from "../trainer-image/training/diloco.js";
import { parameterCount, parameterLayout } from "../trainer-image/training/model.js";
import { Random } from "../trainer-image/training/prng.js";
import { AVERAGE, arithmeticTask, INNER } from "./diloco.js";
import {
  buildTask,
  formatTable,
  type Method,
  type RunResult,
  runMethod,
  type Task,
} from "./lib/diloco-runs.js";
import { resultFile } from "./lib/output.js";
import { poisoningPng } from "./lib/poisoning-plot.js";

/** An attack: how the attackers' updates are replaced, from the round's decoded updates. */
interface Attack {
  name: string;
  craft(own: Float32Array, honest: readonly Float32Array[]): Float32Array;
}

function honestMean(honest: readonly Float32Array[]): Float64Array {
  const mean = new Float64Array(honest[0]!.length);
  for (const update of honest) for (let i = 0; i < mean.length; i++) mean[i]! += update[i]!;
  for (let i = 0; i < mean.length; i++) mean[i]! /= honest.length;
  return mean;
}

const ATTACKS: Attack[] = [
  {
    name: "signFlip10",
    craft: (own) => Float32Array.from(own, (v) => -10 * v),
  },
  ...[1, 1.5].map((z) => ({
    name: `alie${z}`,
    craft: (_own: Float32Array, honest: readonly Float32Array[]) => {
      const mean = honestMean(honest);
      const out = new Float32Array(mean.length);
      for (let i = 0; i < mean.length; i++) {
        let variance = 0;
        for (const update of honest) variance += (update[i]! - mean[i]!) ** 2;
        out[i] = mean[i]! - z * Math.sqrt(variance / honest.length);
      }
      return out;
    },
  })),
  ...[0.1, 10].map((epsilon) => ({
    name: `ipm${epsilon}`,
    craft: (_own: Float32Array, honest: readonly Float32Array[]) =>
      Float32Array.from(honestMean(honest), (v) => -epsilon * v),
  })),
];

/** A member training on corrupted data (random targets) instead of crafting its update. */
const WRONG_DATA = "wrongData";
/** No attackers at all: the honest members alone (n − f workers), with the mean. */
const ABSENT = "absent";

/** A setting: how many workers, and how many of them attack (the last ones). */
const SETTINGS = [
  { name: "1/4", workers: 4, attackers: 1 },
  { name: "2/7", workers: 7, attackers: 2 },
] as const;

const CODECS: Record<"dense" | "topk", CodecParams> = {
  dense: { method: "none" },
  topk: { method: "topk", density: 0.05, bits: 4, groupSize: 256 },
};

const NORM_BOUND: NormBound = { action: "drop", medianMultiple: 3 };

/** The rules a setting and codec run, by name. */
function rules(
  codec: keyof typeof CODECS,
  tolerate: number,
): { name: string; aggregation: AggregationRule; normBound?: NormBound }[] {
  const list: { name: string; aggregation: AggregationRule; normBound?: NormBound }[] = [
    { name: "mean", aggregation: { kind: "mean" } },
    { name: "median", aggregation: { kind: "median" } },
    { name: `trimmedMean(${tolerate})`, aggregation: { kind: "trimmedMean", tolerate } },
    {
      name: `normBound+trimmedMean(${tolerate})`,
      aggregation: { kind: "trimmedMean", tolerate },
      normBound: NORM_BOUND,
    },
  ];
  list.push({
    name: "centredClip(2×median)",
    aggregation: { kind: "centredClip", radiusMedianMultiple: 2, iterations: 3 },
  });
  if (codec === "topk") {
    list.push(
      { name: "sparseMedian", aggregation: { kind: "median", sparse: true } },
      {
        name: `sparseTrimmedMean(${tolerate})`,
        aggregation: { kind: "trimmedMean", tolerate, sparse: true },
      },
      {
        name: `normBound+sparseTrimmedMean(${tolerate})`,
        aggregation: { kind: "trimmedMean", tolerate, sparse: true },
        normBound: NORM_BOUND,
      },
    );
  }
  return list;
}

/** One row of the record, in the format plus context. */
interface Row {
  attack: string;
  setting: string;
  codec: string;
  rule: string;
  finalEvalLoss: number;
  cleanEvalLoss: number;
  /** (finalEvalLoss − cleanEvalLoss) / cleanEvalLoss, in percent. */
  vsCleanPercent: number;
  seconds: number;
}

function option(args: string[], name: string): string[] | undefined {
  const index = args.indexOf(name);
  return index < 0 ? undefined : (args[index + 1] ?? "").split(",");
}

/** Runs the poisoning matrix; see the top of this file. */
export async function run(args: string[]): Promise<unknown> {
  const merge = option(args, "--merge");
  if (merge) {
    const record = await merged(merge);
    await writePlot(record, false);
    return record;
  }
  const quick = args.includes("--quick");
  const backendIndex = args.indexOf("--backend");
  const backend = await initBackend(
    (backendIndex < 0 ? "CPU" : args[backendIndex + 1]) as BackendChoice,
  );
  const attackNames = option(args, "--attack") ?? [
    "none",
    ...ATTACKS.map((a) => a.name),
    WRONG_DATA,
    ABSENT,
  ];
  const codecNames = (option(args, "--codec") ?? Object.keys(CODECS)) as (keyof typeof CODECS)[];
  const settingNames = option(args, "--setting") ?? SETTINGS.map((s) => s.name);
  const ruleNames = option(args, "--rule");
  const known = ["none", ...ATTACKS.map((a) => a.name), WRONG_DATA, ABSENT];
  for (const name of attackNames)
    if (!known.includes(name)) throw new RangeError(`--attack ${name}: one of ${known}`);
  for (const name of codecNames)
    if (!(name in CODECS)) throw new RangeError(`--codec ${name}: dense or topk`);
  const rounds = quick ? 3 : 30;
  const innerSteps = 10;
  const started = performance.now();
  const rows: Row[] = [];
  const tasks: Record<string, unknown> = {};
  for (const setting of SETTINGS.filter((s) => settingNames.includes(s.name))) {
    const task = await buildTask({
      ...arithmeticTask(false),
      workers: setting.workers,
      steps: rounds * innerSteps,
    });
    tasks[setting.name] = { levels: task.levels, spec: task.spec };
    const size = parameterCount(parameterLayout(task.definition));
    const attackerIndices = Array.from(
      { length: setting.attackers },
      (_, i) => setting.workers - 1 - i,
    );
    const attackerIds = new Set(attackerIndices.map((i) => `worker-${i}`));
    // The attackers train on corrupted data: every target replaced by a random token.
    const wrongDataTask: Task = {
      ...task,
      samplers: (seed) => {
        const samplers = task.samplers(seed);
        for (const index of attackerIndices) {
          const sampler = samplers[index]!;
          const next = sampler.next.bind(sampler);
          const random = new Random(seed, "wrong-data", index);
          const vocabulary = task.definition.vocabularySize;
          sampler.next = () => {
            const batch = next();
            if (batch.kind !== "text") return batch;
            const targets = Int32Array.from(batch.targets, () =>
              Math.floor(random.uniform() * vocabulary),
            );
            return { ...batch, targets };
          };
        }
        return samplers;
      },
    };
    const absentTask = attackNames.includes(ABSENT)
      ? await buildTask({
          ...arithmeticTask(false),
          workers: setting.workers - setting.attackers,
          steps: rounds * innerSteps,
        })
      : null;
    for (const codecName of codecNames) {
      const codec = CODECS[codecName];
      const record = (rule: string, attack: string, result: RunResult, clean: number): number => {
        const row: Row = {
          attack,
          setting: setting.name,
          codec: codecName,
          rule,
          finalEvalLoss: result.finalEvalLoss,
          cleanEvalLoss: clean,
          vsCleanPercent: (100 * (result.finalEvalLoss - clean)) / clean,
          seconds: result.seconds,
        };
        rows.push(row);
        console.log(
          `${setting.name} ${codecName} ${rule} ${attack}: eval loss ${row.finalEvalLoss.toFixed(4)} (clean ${clean.toFixed(4)}, ${row.vsCleanPercent >= 0 ? "+" : ""}${row.vsCleanPercent.toFixed(1)} %) in ${row.seconds.toFixed(0)} s`,
        );
        return result.finalEvalLoss;
      };
      const methodOf = (rule: ReturnType<typeof rules>[number]): Method => ({
        name: rule.name,
        innerSteps,
        codec,
        outer: AVERAGE,
        inner: INNER,
        aggregation: rule.aggregation,
        ...(rule.normBound ? { normBound: rule.normBound } : {}),
      });
      const ruleList = rules(codecName, setting.attackers);
      // The clean run every row stands beside: no attacker, the mean.
      const mean = ruleList[0]!;
      const cleanResult = await runMethod(task, methodOf(mean), 7);
      const clean = record(mean.name, "none", cleanResult, cleanResult.finalEvalLoss);
      if (absentTask) {
        record(mean.name, ABSENT, await runMethod(absentTask, methodOf(mean), 7), clean);
      }
      for (const rule of ruleList.filter((r) => !ruleNames || ruleNames.includes(r.name))) {
        for (const attackName of attackNames) {
          if (attackName === ABSENT || (attackName === "none" && rule === mean)) continue;
          const attack = ATTACKS.find((a) => a.name === attackName);
          const tamper = attack
            ? (_round: number, updates: CommittedUpdate[]): CommittedUpdate[] => {
                const decoded = updates.map((u) => decodeUpdate(u.message, size));
                const honest = decoded.filter((_, j) => !attackerIds.has(updates[j]!.worker));
                return updates.map((u, j) =>
                  attackerIds.has(u.worker)
                    ? { ...u, message: encodeUpdate(attack.craft(decoded[j]!, honest), codec) }
                    : u,
                );
              }
            : undefined;
          const runTask = attackName === WRONG_DATA ? wrongDataTask : task;
          record(
            rule.name,
            attackName,
            await runMethod(runTask, methodOf(rule), 7, () => {}, tamper),
            clean,
          );
        }
      }
    }
  }
  console.log(
    formatTable(
      ["setting", "codec", "rule", "attack", "eval loss", "vs clean"],
      rows.map((r) => [
        r.setting,
        r.codec,
        r.rule,
        r.attack,
        r.finalEvalLoss.toFixed(4),
        `${r.vsCleanPercent.toFixed(1)} %`,
      ]),
    ),
  );
  const record = {
    rows,
    selection: {
      attacks: attackNames,
      codecs: codecNames,
      settings: settingNames,
      ...(ruleNames ? { rules: ruleNames } : {}),
    },
    rounds,
    innerSteps,
    tasks,
    backend: backend.backend,
    device: backend.device,
    wallSeconds: (performance.now() - started) / 1000,
  };
  await writePlot(record, quick);
  return record;
}

/** Draws the record's rows as bench/results/poisoning.png (out/bench/ with --quick). */
async function writePlot(record: { rows: Row[]; rounds: number }, quick: boolean): Promise<void> {
  const file = resultFile("poisoning", "png", quick);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(
    file,
    poisoningPng(
      record.rows,
      `POISONING: CHARTRANSFORMER ON ARITHMETIC, ${record.rounds} ROUNDS, FINAL EVAL LOSS VS CLEAN`,
    ),
  );
  console.log(`wrote ${path.relative(repoRoot, file)}`);
}

/** What one invocation recorded, as merged() reads it back. */
interface PartRecord {
  rows: Row[];
  selection: { attacks: string[]; codecs: string[]; settings: string[]; rules?: string[] };
  rounds: number;
  innerSteps: number;
  tasks: Record<string, unknown>;
  backend: string;
  device: string;
  wallSeconds: number;
}

/**
 * `--merge A.json,B.json,…`: one record from several invocations with different selections (the
 * whole matrix takes hours on 2 cores, so it is run in parts, side by side). Rows repeated across
 * parts (each part runs its clean rows) must agree exactly, as the runs are deterministic on one
 * backend; the record lists every part's selection and wall time.
 */
async function merged(files: string[]) {
  const parts = await Promise.all(
    files.map(async (file) => JSON.parse(await readFile(file, "utf8")) as PartRecord),
  );
  const rows = new Map<string, Row>();
  for (const part of parts) {
    if (part.rounds !== parts[0]!.rounds || part.innerSteps !== parts[0]!.innerSteps) {
      throw new Error("the parts ran different schedules and cannot be merged");
    }
    for (const row of part.rows) {
      const key = `${row.setting} ${row.codec} ${row.rule} ${row.attack}`;
      const before = rows.get(key);
      if (before && before.finalEvalLoss !== row.finalEvalLoss) {
        throw new Error(
          `${key}: ${before.finalEvalLoss} in one part, ${row.finalEvalLoss} in another`,
        );
      }
      rows.set(key, row);
    }
  }
  return {
    rows: [...rows.values()],
    parts: parts.map((part, i) => ({
      file: path.basename(files[i]!),
      selection: part.selection,
      wallSeconds: part.wallSeconds,
    })),
    rounds: parts[0]!.rounds,
    innerSteps: parts[0]!.innerSteps,
    tasks: Object.assign({}, ...parts.map((part) => part.tasks)),
    backend: parts[0]!.backend,
    device: parts[0]!.device,
  };
}
