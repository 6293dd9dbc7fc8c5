// Exact top-k selection by magnitude without sorting: a two-level radix select over float32 bit
// patterns. With the sign bit cleared, the IEEE 754 bit pattern of a float orders exactly like its
// magnitude (NaNs above infinity), so comparing uint32 keys compares |x|.

/** The rank-th largest magnitude key and how many elements equal to it complete the rank. */
export interface Selection {
  /** Bit pattern (sign cleared) of the rank-th largest magnitude. */
  key: number;
  /** Elements with exactly this key to take, lowest index first, after all larger ones. */
  ties: number;
  /** Whether any key is an infinity or NaN (exponent all ones). */
  nonFinite: boolean;
}

export const HISTOGRAM_BUCKETS = 65536;
const SIGN_CLEAR = 0x7fffffff;
/** First bucket of the high 16 bits whose exponent is all ones (infinity or NaN). */
const NON_FINITE_BUCKET = 0x7f80;

/**
 * Finds the rank-th largest magnitude (1 ≤ rank ≤ count) among keys[0..count), where keys are
 * float32 bit patterns: one histogram pass on the high 16 bits, one on the low 16 bits of the
 * elements in the chosen bucket. `histogram` is caller-owned scratch of HISTOGRAM_BUCKETS entries.
 */
export function selectLargest(
  keys: Uint32Array,
  count: number,
  rank: number,
  histogram: Uint32Array,
): Selection {
  histogram.fill(0);
  for (let i = 0; i < count; i++) {
    const bucket = (keys[i]! & SIGN_CLEAR) >>> 16;
    histogram[bucket] = histogram[bucket]! + 1;
  }
  let nonFiniteCount = 0;
  for (let b = NON_FINITE_BUCKET; b < 0x8000; b++) nonFiniteCount += histogram[b]!;

  let above = 0;
  let high = 0x7fff;
  for (; high > 0; high--) {
    const h = histogram[high]!;
    if (above + h >= rank) break;
    above += h;
  }

  histogram.fill(0);
  for (let i = 0; i < count; i++) {
    const key = keys[i]! & SIGN_CLEAR;
    if (key >>> 16 === high) {
      const bucket = key & 0xffff;
      histogram[bucket] = histogram[bucket]! + 1;
    }
  }
  let low = 0xffff;
  for (; low > 0; low--) {
    const h = histogram[low]!;
    if (above + h >= rank) break;
    above += h;
  }
  return { key: (high << 16) | low, ties: rank - above, nonFinite: nonFiniteCount > 0 };
}
