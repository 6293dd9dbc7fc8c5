// The DiLoCo outer optimiser: SGD with Nesterov momentum applied to the global parameters with the
// round's aggregated pseudo-gradient Δ = global − mean(local). Per element, in float64, rounded to
// float32 on store (so every member computes the same bits):
//   v ← μ·v + Δ
//   params ← params − lr·(Δ + μ·v)   (Nesterov)   or   params ← params − lr·v   (heavy ball)
import { CodecError } from "./errors.js";
import type { OuterOptimizerConfig } from "./types.js";

/** DiLoCo's outer optimiser settings (Douillard et al., 2023). */
export const DILOCO_OUTER: Readonly<OuterOptimizerConfig> = {
  learningRate: 0.7,
  momentum: 0.9,
  nesterov: true,
};

/** "FTOS": fedtrain outer (optimiser) state. */
const STATE_MAGIC = Uint8Array.of(0x46, 0x54, 0x4f, 0x53);
const STATE_VERSION = 1;
const STATE_HEADER_BYTES = 32;
const FLAG_NESTEROV = 1;
/** The state also holds the last aggregated pseudo-gradient (after the momentum buffer). */
const FLAG_LAST_AGGREGATE = 2;

/** Outer optimiser of one federation: config, momentum buffer and the number of steps taken. */
export class OuterOptimizer {
  readonly config: Readonly<OuterOptimizerConfig>;
  /** Momentum buffer v, one entry per model parameter. */
  readonly momentumBuffer: Float32Array;
  /** Outer steps applied so far (one per committed round). */
  stepCount = 0;
  /**
   * The aggregated pseudo-gradient of the last step (zeros before the first), when kept: centred
   * clipping starts each round from it. Null when not kept.
   */
  readonly lastAggregate: Float32Array | null;

  constructor(
    elementCount: number,
    config: OuterOptimizerConfig = DILOCO_OUTER,
    options: { keepLastAggregate?: boolean } = {},
  ) {
    if (!(config.learningRate > 0 && Number.isFinite(config.learningRate))) {
      throw new RangeError(`outer learning rate ${config.learningRate} must be positive`);
    }
    if (!(config.momentum >= 0 && config.momentum < 1)) {
      throw new RangeError(`outer momentum ${config.momentum} must be in [0, 1)`);
    }
    this.config = { ...config };
    this.momentumBuffer = new Float32Array(elementCount);
    this.lastAggregate = options.keepLastAggregate ? new Float32Array(elementCount) : null;
  }

  /** Copies another optimiser's state (momentum, steps, last aggregate) into this one. */
  restore(from: OuterOptimizer): void {
    if (from.momentumBuffer.length !== this.momentumBuffer.length) {
      throw new RangeError(
        `optimiser state of ${from.momentumBuffer.length} parameters for ${this.momentumBuffer.length}`,
      );
    }
    this.momentumBuffer.set(from.momentumBuffer);
    this.stepCount = from.stepCount;
    if (this.lastAggregate) {
      if (from.lastAggregate) this.lastAggregate.set(from.lastAggregate);
      else this.lastAggregate.fill(0);
    }
  }

  /** Applies one round's aggregated pseudo-gradient to the global parameters, in place. */
  step(params: Float32Array, pseudoGradient: Float32Array): void {
    const v = this.momentumBuffer;
    if (params.length !== v.length || pseudoGradient.length !== v.length) {
      throw new RangeError(
        `outer step on ${params.length} parameters with a ${pseudoGradient.length}-element pseudo-gradient; the optimiser holds ${v.length}`,
      );
    }
    const lr = this.config.learningRate;
    const mu = this.config.momentum;
    if (this.config.nesterov) {
      for (let i = 0; i < v.length; i++) {
        const delta = pseudoGradient[i]!;
        const velocity = Math.fround(mu * v[i]! + delta);
        v[i] = velocity;
        params[i] = params[i]! - lr * (delta + mu * velocity);
      }
    } else {
      for (let i = 0; i < v.length; i++) {
        const velocity = Math.fround(mu * v[i]! + pseudoGradient[i]!);
        v[i] = velocity;
        params[i] = params[i]! - lr * velocity;
      }
    }
    this.lastAggregate?.set(pseudoGradient);
    this.stepCount++;
  }

  /** Checkpoint form of the optimiser (layout in FORMAT.md). */
  serialize(): Uint8Array {
    const n = this.momentumBuffer.length;
    const vectors = this.lastAggregate ? 2 : 1;
    const bytes = new Uint8Array(STATE_HEADER_BYTES + 4 * n * vectors);
    const view = new DataView(bytes.buffer);
    bytes.set(STATE_MAGIC, 0);
    view.setUint8(4, STATE_VERSION);
    view.setUint8(
      5,
      (this.config.nesterov ? FLAG_NESTEROV : 0) | (this.lastAggregate ? FLAG_LAST_AGGREGATE : 0),
    );
    view.setFloat64(8, this.config.learningRate, true);
    view.setFloat64(16, this.config.momentum, true);
    view.setUint32(24, this.stepCount, true);
    view.setUint32(28, n, true);
    new Float32Array(bytes.buffer, STATE_HEADER_BYTES, n).set(this.momentumBuffer);
    if (this.lastAggregate) {
      new Float32Array(bytes.buffer, STATE_HEADER_BYTES + 4 * n, n).set(this.lastAggregate);
    }
    return bytes;
  }

  /** Restores a checkpointed optimiser for a model of `expectedElementCount` parameters. */
  static deserialize(bytes: Uint8Array, expectedElementCount: number): OuterOptimizer {
    if (bytes.length < STATE_HEADER_BYTES) {
      throw new CodecError("truncated", `optimiser state is ${bytes.length} bytes, too short`);
    }
    for (let i = 0; i < STATE_MAGIC.length; i++) {
      if (bytes[i] !== STATE_MAGIC[i]) {
        throw new CodecError("bad-magic", "not a fedtrain optimiser state: magic is not FTOS");
      }
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const version = view.getUint8(4);
    if (version !== STATE_VERSION) {
      throw new CodecError(
        "unsupported-version",
        `optimiser state version ${version} is not supported (this build reads ${STATE_VERSION})`,
      );
    }
    const flags = view.getUint8(5);
    if ((flags & ~(FLAG_NESTEROV | FLAG_LAST_AGGREGATE)) !== 0 || view.getUint16(6, true) !== 0) {
      throw new CodecError("bad-header", "optimiser state has unknown flags or reserved bytes set");
    }
    const elementCount = view.getUint32(28, true);
    if (elementCount !== expectedElementCount) {
      throw new CodecError(
        "element-count-mismatch",
        `optimiser state holds ${elementCount} parameters but the model has ${expectedElementCount}`,
      );
    }
    const keepLastAggregate = (flags & FLAG_LAST_AGGREGATE) !== 0;
    const expectedLength = STATE_HEADER_BYTES + 4 * elementCount * (keepLastAggregate ? 2 : 1);
    if (bytes.length !== expectedLength) {
      throw new CodecError(
        bytes.length < expectedLength ? "truncated" : "trailing-bytes",
        `optimiser state is ${bytes.length} bytes, expected ${expectedLength}`,
      );
    }
    const config: OuterOptimizerConfig = {
      learningRate: view.getFloat64(8, true),
      momentum: view.getFloat64(16, true),
      nesterov: (flags & FLAG_NESTEROV) !== 0,
    };
    let optimizer: OuterOptimizer;
    try {
      optimizer = new OuterOptimizer(elementCount, config, { keepLastAggregate });
    } catch (error) {
      throw new CodecError("bad-header", "optimiser state has an invalid configuration", {
        cause: error,
      });
    }
    // Copied into a fresh, aligned buffer: the input may be a view at any offset (a Node Buffer's
    // slice() is a view too, not a copy).
    const aligned = new Uint8Array(expectedLength - STATE_HEADER_BYTES);
    aligned.set(bytes.subarray(STATE_HEADER_BYTES));
    const values = new Float32Array(aligned.buffer);
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i]!)) {
        const what = i < elementCount ? "momentum" : "last aggregate";
        throw new CodecError("bad-value", `optimiser ${what} ${i % elementCount} is not finite`);
      }
    }
    optimizer.momentumBuffer.set(values.subarray(0, elementCount));
    optimizer.lastAggregate?.set(values.subarray(elementCount));
    optimizer.stepCount = view.getUint32(24, true);
    return optimizer;
  }
}
