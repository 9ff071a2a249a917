/** The clients' output: the progress line, its redraw throttle, --json and --quiet. */
import t from 'tap'
import type { Output } from '../../lib/cli/common.js'
import { progressLine, Reporter } from '../../lib/cli/output.js'

const MiB = 1 << 20

function capture(tty: boolean) {
  const out: string[] = []
  const err: string[] = []
  const status: string[] = []
  const io: Output = {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    ...(tty ? { status: (l: string) => status.push(l) } : {}),
  }
  return { io, out, err, status }
}

t.test('progressLine: bar, percent, bytes, rate, ETA, sources', async (t) => {
  t.equal(
    progressLine(
      {
        bytes: 50 * MiB,
        total: 100 * MiB,
        phase: 'swarm',
        bytesFromAgents: 30 * MiB,
        bytesFromOrigins: 20 * MiB,
      },
      5,
    ),
    '[############............]   50%  50.0 MiB / 100.0 MiB  10.0 MiB/s  ETA 5 s  (swarm, from agents 30.0 MiB, origins 20.0 MiB)',
  )
  t.equal(
    progressLine({ bytes: 10 * MiB, total: -1 }, 1),
    '10.0 MiB  10.0 MiB/s',
    'unknown total: no bar, no ETA',
  )
  t.match(progressLine({ bytes: MiB, total: 3600 * MiB, peers: 3 }, 1), /ETA 59 min 59 s {2}\(3 peers\)$/)
  t.match(progressLine({ bytes: MiB, total: 4 * 3600 * MiB }, 0.5), /ETA 2 h 0 min/)
  t.match(progressLine({ bytes: 0, total: 0, phase: 'waiting for flag' }, 3), /^0 B {2}\(waiting for flag\)$/)
})

t.test('the bar is redrawn at most every 100 ms, always at a phase change and at the end', async (t) => {
  let now = 0
  const c = capture(true)
  const r = new Reporter(c.io, { now: () => now })
  for (let i = 1; i <= 1000; i++) {
    now += 1
    r.progress({ bytes: i * 1000, total: 1_000_000, phase: 'uploading' })
  }
  t.ok(c.status.length <= 11, `${c.status.length} draws in one second`)
  t.match(c.status.at(-1), /100%/, 'the last state is drawn')
  r.progress({ bytes: 1, total: 10, phase: 'next' })
  t.match(c.status.at(-1), /\(next\)/, 'a new phase is drawn at once')
  r.result({ ok: true }, ['done'])
  t.equal(c.status.at(-1), '', 'cleared before the result')
  t.same(c.out, ['done'])
})

t.test('no terminal, --quiet, --json', async (t) => {
  const pipe = capture(false)
  const r1 = new Reporter(pipe.io)
  r1.progress({ bytes: 1, total: 2 })
  r1.note('a remark')
  r1.result({ a: 1 }, ['line 1', 'line 2'])
  t.same(pipe.out, ['line 1', 'line 2'])
  t.same(pipe.err, ['a remark'])

  const quiet = capture(true)
  const r2 = new Reporter(quiet.io, { quiet: true })
  r2.progress({ bytes: 1, total: 2 })
  r2.note('a remark')
  r2.result({ a: 1 }, ['line'])
  t.same([quiet.out, quiet.err, quiet.status], [[], [], []])

  const json = capture(true)
  const r3 = new Reporter(json.io, { json: true })
  r3.progress({ bytes: 1, total: 2 })
  r3.note('a remark')
  r3.result({ a: 1, b: 'x' }, ['line'])
  t.same(json.out, ['{"a":1,"b":"x"}'])
  t.same([json.err, json.status], [[], []])
})
