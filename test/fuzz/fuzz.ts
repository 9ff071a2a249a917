/**
 * Property runs for the parsers of hostile input (test/fuzz/*.test.ts).
 *
 * In `npm test` each property runs SHORT_RUNS times from a fixed seed, so CI is deterministic.
 * `npm run fuzz` runs FUZZ_RUNS (default 20,000) from a random seed; the seed is printed (a tap
 * comment) and FUZZ_SEED=<seed> replays a run. A failure prints fast-check's counterexample, seed
 * and path: shrink it into a regression test next to the property (see README in this folder).
 */
import fc from 'fast-check'
import { type ErrorCode, isShoalError } from '../../lib/errors/index.js'

export const SHORT_RUNS = 200
const FIXED_SEED = 20261206

const runsFromEnv = Number(process.env.FUZZ_RUNS)
const long = Number.isInteger(runsFromEnv) && runsFromEnv > 0
const seedFromEnv = process.env.FUZZ_SEED === undefined ? Number.NaN : Number(process.env.FUZZ_SEED)

/** The seed of this process's runs: fixed for `npm test`, random (or FUZZ_SEED) for `npm run fuzz`. */
export const FUZZ_SEED = Number.isInteger(seedFromEnv)
  ? seedFromEnv
  : long
    ? Math.floor(Math.random() * 0x7fffffff)
    : FIXED_SEED

/** fast-check parameters; `scale` divides the runs of an expensive property. */
export function params(scale = 1): fc.Parameters<unknown> {
  const numRuns = Math.max(1, Math.floor((long ? runsFromEnv : SHORT_RUNS) / scale))
  return { numRuns, seed: FUZZ_SEED }
}

interface Commented {
  comment(...args: unknown[]): void
  test(name: string, fn: (t: { pass(msg: string): void }) => Promise<void> | void): unknown
}

/** One tap test per property, named, with the seed in its output so a finding can be replayed. */
export function property(
  t: Commented,
  name: string,
  prop: fc.IProperty<unknown> | fc.IAsyncProperty<unknown>,
  scale = 1,
): void {
  t.test(name, async (tt) => {
    await fc.assert(prop as fc.IAsyncProperty<unknown>, params(scale))
    tt.pass(`${params(scale).numRuns} runs, seed ${FUZZ_SEED}`)
  })
}

/**
 * Runs `fn`; a ShoalError with one of `codes` is an accepted refusal (undefined), anything else
 * thrown fails the property with what was thrown.
 */
export function refusedOnlyWith<T>(codes: readonly ErrorCode[], fn: () => T): T | undefined {
  try {
    return fn()
  } catch (err) {
    if (isShoalError(err) && codes.includes(err.code)) return undefined
    const what = isShoalError(err) ? `ShoalError ${err.code}` : (err as Error)?.constructor?.name
    throw new Error(`threw ${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  }
}

/** Strings a parser of names and paths should meet: separators, dots, controls, non-ASCII. */
export const hostileChar = fc.constantFrom(
  '-',
  '/',
  ':',
  '.',
  '..',
  '\\',
  '\0',
  ' ',
  '\t',
  '\n',
  '%',
  '%2F',
  '+',
  '=',
  '&',
  '?',
  '#',
  'é',
  '日',
  '\u202e',
  '\ufffd',
  '\ud800',
  '😀',
  'latest',
  'a',
  'Z',
  '0',
  '9',
  '_',
  '~',
)

/** Strings biased towards parser-relevant characters, mixed with anything at all. */
export const nearText = fc.oneof(
  fc.array(hostileChar, { maxLength: 24 }).map((a) => a.join('')),
  fc.string({ maxLength: 64 }),
  fc.string({ unit: 'binary', maxLength: 64 }),
)
