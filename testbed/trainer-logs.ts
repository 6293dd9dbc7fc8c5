// What the trainers of one member logged, read from the node agent's log files
// (<pods>/<namespace>_<pod>_<uid>/logs/trainer.log, pino JSON lines).
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";

/** One applied round as a trainer logged it. */
export interface RoundLog {
  round: number;
  trainLoss: number;
  evalLoss: number;
  bytesSent: number;
  /** SHA-256 of the global model after this round: the same in every worker. */
  globalHash: string;
  /** Whether the round had too few updates for the aggregation's stated protection. */
  unprotected: boolean;
}

/** What a trainer logged at the end of its run about what the model can do (learned.ts). */
export interface LearnedLog {
  /** One line on the trained model: answer accuracy, or generated text. */
  trained: string;
  /** The same for the untrained model (the federation's initial weights). */
  untrained: string;
  /** Held-out answer accuracy of the trained and the untrained model (Arithmetic data). */
  accuracy?: { trained: number; untrained: number };
}

/** A member's trainer log, summarised. */
export interface TrainerLog {
  parameters: number | undefined;
  /** The latest pod's "what the model learned" line, once a trainer completed. */
  learned?: LearnedLog;
  /** One entry per round: the latest pod's. */
  rounds: RoundLog[];
  /**
   * Every "round applied" line of every pod, by pod (in pod folder order) and then in log order:
   * a round shows more than once when a pod applied it again or a replacement pod logged it too.
   */
  applications: (RoundLog & { pod: string })[];
}

/** Reads the trainer logs of the pods of `podPrefix` in `namespace`; later pods win per round. */
export async function readTrainerLog(
  podsDir: string,
  namespace: string,
  podPrefix: string,
): Promise<TrainerLog> {
  const result: TrainerLog = { parameters: undefined, rounds: [], applications: [] };
  let entries: string[];
  try {
    entries = await readdir(podsDir);
  } catch {
    return result;
  }
  const byRound = new Map<number, RoundLog>();
  for (const entry of entries.filter((e) => e.startsWith(`${namespace}_${podPrefix}`)).sort()) {
    let text: string;
    try {
      text = await readFile(path.join(podsDir, entry, "logs", "trainer.log"), "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (record.msg === "model and data loaded" && typeof record.parameters === "number") {
        result.parameters = record.parameters;
      } else if (record.msg === "what the model learned") {
        result.learned = learnedLog(record);
      } else if (record.msg === "round applied" && typeof record.round === "number") {
        const round: RoundLog = {
          round: record.round,
          trainLoss: Number(record.trainLoss),
          evalLoss: Number(record.evalLoss),
          bytesSent: Number(record.bytesSent),
          globalHash: String(record.globalHash ?? ""),
          unprotected: record.unprotected === true,
        };
        byRound.set(round.round, round);
        result.applications.push({ ...round, pod: podName(entry, namespace) });
      }
    }
  }
  result.rounds = [...byRound.values()].sort((a, b) => a.round - b.round);
  return result;
}

/** Every message the trainers of the pods of `podPrefix` in `namespace` logged, pod by pod. */
export async function readTrainerMessages(
  podsDir: string,
  namespace: string,
  podPrefix: string,
): Promise<string[]> {
  const entries = await readdir(podsDir).catch(() => [] as string[]);
  const messages: string[] = [];
  for (const entry of entries.filter((e) => e.startsWith(`${namespace}_${podPrefix}`)).sort()) {
    const file = path.join(podsDir, entry, "logs", "trainer.log");
    const text = await readFile(file, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const { msg } = JSON.parse(line) as { msg?: unknown };
        if (typeof msg === "string") messages.push(msg);
      } catch {
        // A line cut by a crash is not a message.
      }
    }
  }
  return messages;
}

function learnedLog(record: Record<string, unknown>): LearnedLog {
  const learned = record.learned as
    | { trained?: { accuracy?: unknown }; untrained?: { accuracy?: unknown } }
    | undefined;
  const trained = learned?.trained?.accuracy;
  const untrained = learned?.untrained?.accuracy;
  return {
    trained: String(record.trained ?? ""),
    untrained: String(record.untrained ?? ""),
    ...(typeof trained === "number" && typeof untrained === "number"
      ? { accuracy: { trained, untrained } }
      : {}),
  };
}

/** The pod's name from its folder's name, <namespace>_<pod>_<uid>. */
function podName(folder: string, namespace: string): string {
  const rest = folder.slice(namespace.length + 1);
  return rest.slice(0, rest.lastIndexOf("_"));
}
