// A work queue of object keys with client-go's semantics: a key is queued at most once, is never
// handed to two workers at once (a key added while being processed is queued again when done),
// can be added after a delay, and failed keys come back after a per-key exponential back-off that
// an overall token bucket also limits.
import type { WorkQueueMetrics } from "./metrics.js";

/** Decides how long a failing key waits before its next try. */
export interface RateLimiter {
  /** The delay before the next try of key, counting this failure. */
  when(key: string): number;
  /** Forgets key's failures (after a success). */
  forget(key: string): void;
  /** Failures of key since it was last forgotten. */
  retries(key: string): number;
}

/** Per-key exponential back-off: base·2^failures, capped (client-go: 5 ms to 1000 s). */
export class ExponentialBackoff implements RateLimiter {
  private readonly failures = new Map<string, number>();

  constructor(
    private readonly baseMs = 5,
    private readonly maxMs = 1_000_000,
  ) {}

  when(key: string): number {
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.min(failures, 40));
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }
}

/**
 * An overall token bucket (client-go: 10 per second, bursts of 100): however many keys fail,
 * retries reach the API server at a bounded rate.
 */
export class TokenBucket implements RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly perSecond = 10,
    private readonly burst = 100,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  when(): number {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.perSecond) * 1000;
  }

  forget(): void {}

  retries(): number {
    return 0;
  }
}

/** The longest delay of several limiters (client-go's default controller rate limiter). */
export class MaxOf implements RateLimiter {
  private readonly limiters: RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.limiters = limiters;
  }

  when(key: string): number {
    return Math.max(...this.limiters.map((l) => l.when(key)));
  }

  forget(key: string): void {
    for (const l of this.limiters) l.forget(key);
  }

  retries(key: string): number {
    return Math.max(...this.limiters.map((l) => l.retries(key)));
  }
}

/** The default: per-key exponential back-off, limited overall by a token bucket. */
export function defaultRateLimiter(): RateLimiter {
  return new MaxOf(new ExponentialBackoff(), new TokenBucket());
}

/** A deduplicating, delaying, rate-limited queue of keys. */
export class WorkQueue {
  private readonly queue: string[] = [];
  /** Keys waiting to be processed (in the queue, or to be re-queued when done). */
  private readonly dirty = new Set<string>();
  private readonly processing = new Map<string, number>();
  private readonly addedAt = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private shuttingDown = false;

  constructor(
    private readonly rateLimiter: RateLimiter = defaultRateLimiter(),
    private readonly metrics?: WorkQueueMetrics,
  ) {}

  /** Keys queued and not yet handed out. */
  get length(): number {
    return this.queue.length;
  }

  /** Queues key now, unless it is already waiting. */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.metrics?.adds.inc();
    this.dirty.add(key);
    this.addedAt.set(key, performance.now());
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Queues key after delayMs; an earlier pending delay for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.delayed.set(key, { at, timer });
  }

  /** Queues key after its rate limiter's back-off: use after a failed try. */
  addRateLimited(key: string): void {
    this.metrics?.retries.inc();
    this.addAfter(key, this.rateLimiter.when(key));
  }

  /** Forgets key's failures: use after a successful try. */
  forget(key: string): void {
    this.rateLimiter.forget(key);
  }

  /** Failures of key since its last success. */
  retries(key: string): number {
    return this.rateLimiter.retries(key);
  }

  /** The next key to process, waiting for one; undefined once the queue shuts down. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) return Promise.resolve(this.handOut(key));
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks key as processed; a key added meanwhile is queued again. */
  done(key: string): void {
    const started = this.processing.get(key);
    this.processing.delete(key);
    if (started !== undefined)
      this.metrics?.workDuration.observe((performance.now() - started) / 1000);
    if (this.dirty.has(key) && !this.shuttingDown) this.push(key);
    this.updateDepth();
  }

  /** Wakes every waiting get() with undefined, so idle workers can stop; the queue stays open. */
  release(): void {
    for (const waiter of this.waiters.splice(0)) waiter(undefined);
  }

  /** Stops handing out keys; waiting get() calls resolve with undefined. */
  shutdown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    for (const waiter of this.waiters.splice(0)) waiter(undefined);
  }

  /** Seconds the longest-running key has been processed, for the metrics. */
  longestRunningSeconds(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const started of this.processing.values()) oldest = Math.min(oldest, started);
    return oldest === Number.POSITIVE_INFINITY ? 0 : (performance.now() - oldest) / 1000;
  }

  /** Seconds of work in progress that has not finished, summed over keys. */
  unfinishedSeconds(): number {
    const now = performance.now();
    let total = 0;
    for (const started of this.processing.values()) total += (now - started) / 1000;
    return total;
  }

  private push(key: string): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(this.handOut(key));
    else this.queue.push(key);
    this.updateDepth();
  }

  private handOut(key: string): string {
    this.dirty.delete(key);
    this.processing.set(key, performance.now());
    const added = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (added !== undefined)
      this.metrics?.queueDuration.observe((performance.now() - added) / 1000);
    this.updateDepth();
    return key;
  }

  private updateDepth(): void {
    this.metrics?.depth.set(this.queue.length);
  }
}
