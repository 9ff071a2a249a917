/**
 * The clients' whole surface (design §4.2–4.4), run through the programs in-process against a
 * real herd and agent: every flag's accepted and refused values (message and exit code), the
 * defaults, the positional forms, client config / environment / flag precedence, --json,
 * --quiet, --version, --help; an immutable version refused before any byte is uploaded; a
 * non-ASCII name end to end. NAME resolution lists the tags through the real agent and proxy.
 */
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { EXIT_CODE_MEANINGS, EXIT_CODES, softwareVersion } from '../../lib/cli/common.js'
import { pullProgram, pushProgram, removeProgram } from '../../lib/cli/programs.js'
import { DEFAULT_NAMESPACE, Digest, Tag } from '../../lib/core/index.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { cliRunner, type Make } from '../helpers/cli-run.js'
import { tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'

const DEAD = '127.0.0.1:1'

const root = await tempDir(t)
const herd = await startTestHerd(t, root)
const agent = await startTestAgent(t, { herd, dataDir: join(root, 'agent') })
const PROXY = herd.urls.proxy
const AGENT = agent.url

const run = cliRunner(root)

async function file(dir: string, name: string, bytes: Buffer | string = randomBytes(4096)): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, bytes)
  return path
}

/** Pushes through the program; the JSON result. */
async function pushed(t: Test, args: string[]): Promise<Record<string, unknown>> {
  const r = await run(pushProgram, ['push', '--json', '--dst-host', PROXY, ...args])
  t.equal(r.code, 0, r.err)
  return JSON.parse(r.out)
}

interface Case {
  name: string
  make: Make
  args: (dir: string) => string[]
  code: number
  /** Matched against stderr. */
  err?: RegExp | string
}

/** Accepted values: they parse, so the run gets as far as the file (absent: exit 7) or the daemon. */
const ARGS_OK = (dir: string) => ['push', '--dst-host', DEAD, '--src-path', join(dir, 'absent.txt')]
const PULL = (dir: string) => [
  'pull',
  '--dst-host',
  DEAD,
  '--dst-path',
  join(dir, 'out'),
  '--tag',
  'h-/d-f.txt:v1',
]
const INVALID = (flag: string, value: string) =>
  new RegExp(`^\\w+CLI: option '${flag} <[^>]+>' argument '${value}' is invalid\\. `)

const cases: Case[] = [
  // PushCLI push (§4.2)
  {
    name: 'push --timeout abc',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--timeout', 'abc'],
    code: 2,
    err: INVALID('--timeout', 'abc'),
  },
  {
    name: 'push --timeout -1',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--timeout', '-1'],
    code: 2,
    err: /expected a number of seconds, 0 or more \(0 = no timeout\)$/,
  },
  {
    name: 'push --timeout 0 (none)',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--timeout', '0'],
    code: 7,
    err: /no such file$/,
  },
  {
    name: 'push --timeout 2.5',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--timeout', '2.5'],
    code: 7,
  },
  { name: 'push --has-flag n', make: pushProgram, args: (d) => [...ARGS_OK(d), '--has-flag', 'n'], code: 7 },
  {
    name: 'push --has-flag X',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--has-flag', 'X'],
    code: 2,
    err: /argument 'X' is invalid\. expected one of F, N$/,
  },
  {
    name: 'push --res-type FILE',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--res-type', 'FILE'],
    code: 7,
  },
  {
    name: 'push --res-type dir',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--res-type', 'dir'],
    code: 2,
    err: /expected one of file, directory$/,
  },
  {
    name: 'push --dst-type Shoal',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--dst-type', 'Shoal'],
    code: 7,
  },
  {
    name: 'push --dst-type nfs',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--dst-type', 'nfs'],
    code: 2,
    err: /expected one of shoal, csgw$/,
  },
  {
    name: 'push --dst-type csgw without an ftp address',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--dst-type', 'csgw'],
    code: 2,
    err: '--dst-type csgw needs --dst-host ftp://host[:port]/dir',
  },
  {
    name: 'push --res-desc',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--res-desc', 'EOD prices'],
    code: 7,
  },
  {
    name: 'push --src-host',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--src-host', '10.0.0.7'],
    code: 7,
  },
  {
    name: 'push --tag invalid',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--tag', 'no-slash'],
    code: 2,
    err: /invalid tag/,
  },
  {
    name: 'push --version bad',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--version', '../x'],
    code: 2,
    err: /version/,
  },
  {
    name: 'push --version without a value',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--version'],
    code: 2,
    err: "option '--version <version>' argument missing",
  },
  {
    name: 'push without a file',
    make: pushProgram,
    args: () => ['push', '--dst-host', DEAD],
    code: 2,
    err: 'PushCLI: a file is required (--src-path FILE or the FILE argument)',
  },
  {
    name: 'push two different files',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), join(d, 'other.txt')],
    code: 2,
    err: /two files given/,
  },
  {
    name: 'push a directory as a file',
    make: pushProgram,
    args: (d) => ['push', '--dst-host', DEAD, d],
    code: 7,
    err: /it is a directory; push it with --res-type directory$/,
  },
  {
    name: 'push --config missing',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--config', join(d, 'missing.yaml')],
    code: 2,
    err: /client config .*missing\.yaml \(--config\) does not exist$/,
  },
  {
    name: 'push --bogus',
    make: pushProgram,
    args: (d) => [...ARGS_OK(d), '--bogus'],
    code: 2,
    err: "PushCLI: unknown option '--bogus'",
  },
  // PullCLI pull (§4.3)
  {
    name: 'pull --timeout abc',
    make: pullProgram,
    args: (d) => [...PULL(d), '--timeout', 'abc'],
    code: 2,
    err: INVALID('--timeout', 'abc'),
  },
  { name: 'pull --timeout -1', make: pullProgram, args: (d) => [...PULL(d), '--timeout', '-1'], code: 2 },
  {
    name: 'pull --timeout 0',
    make: pullProgram,
    args: (d) => [...PULL(d), '--timeout', '0'],
    code: 6,
    err: /cannot reach the agent/,
  },
  { name: 'pull --has-flag f', make: pullProgram, args: (d) => [...PULL(d), '--has-flag', 'f'], code: 6 },
  {
    name: 'pull --has-flag yes',
    make: pullProgram,
    args: (d) => [...PULL(d), '--has-flag', 'yes'],
    code: 2,
    err: /expected one of F, N$/,
  },
  {
    name: 'pull --is-cover FALSE',
    make: pullProgram,
    args: (d) => [...PULL(d), '--is-cover', 'FALSE'],
    code: 6,
  },
  {
    name: 'pull --is-cover maybe',
    make: pullProgram,
    args: (d) => [...PULL(d), '--is-cover', 'maybe'],
    code: 2,
    err: /expected one of true, false$/,
  },
  {
    name: 'pull --res-type directory',
    make: pullProgram,
    args: (d) => [...PULL(d), '--res-type', 'directory'],
    code: 6,
  },
  {
    name: 'pull --res-type tree',
    make: pullProgram,
    args: (d) => [...PULL(d), '--res-type', 'tree'],
    code: 2,
  },
  { name: 'pull --res-desc', make: pullProgram, args: (d) => [...PULL(d), '--res-desc', 'x'], code: 6 },
  {
    name: 'pull --new-name a path',
    make: pullProgram,
    args: (d) => [...PULL(d), '--is-cover', 'false', '--new-name', '../x'],
    code: 7,
    err: /invalid --new-name "\.\.\/x": a file name, not a path/,
  },
  {
    name: 'pull --new-name',
    make: pullProgram,
    args: (d) => [...PULL(d), '--is-cover', 'false', '--new-name', 'x.new'],
    code: 6,
  },
  {
    name: 'pull without --dst-path',
    make: pullProgram,
    args: () => ['pull', '--tag', 'h-/d-f.txt'],
    code: 2,
    err: "PullCLI: required option '--dst-path <dir>' not specified",
  },
  {
    name: 'pull without a tag',
    make: pullProgram,
    args: (d) => ['pull', '--dst-path', d],
    code: 2,
    err: 'a tag or a file name is required (--tag TAG or NAME)',
  },
  {
    name: 'pull --tag and NAME',
    make: pullProgram,
    args: (d) => [...PULL(d), 'x.txt'],
    code: 2,
    err: 'both --tag and NAME (x.txt) given',
  },
  {
    name: 'pull an unknown file name',
    make: pullProgram,
    args: (d) => ['pull', '--dst-host', AGENT, '--dst-path', d, '--src-host', 'nohost', 'x.txt'],
    code: 3,
    err: /no tag matches file name "x\.txt" \(--src-host nohost\)/,
  },
  {
    name: 'pull --src-dir --version narrow',
    make: pullProgram,
    args: (d) => [
      'pull',
      '--dst-host',
      AGENT,
      '--dst-path',
      d,
      '--src-dir',
      '/nowhere',
      '--version',
      'v9',
      'x.txt',
    ],
    code: 3,
    err: /--src-dir \/nowhere, --version v9/,
  },
  // RemoveCLI remove (§4.4)
  {
    name: 'remove without a tag',
    make: removeProgram,
    args: () => ['remove', '--dst-host', DEAD],
    code: 2,
    err: 'a tag is required (--tag TAG or NAME)',
  },
  {
    name: 'remove --timeout abc',
    make: removeProgram,
    args: () => ['remove', 'h-/d-f.txt', '--timeout', 'abc'],
    code: 2,
  },
  {
    name: 'remove --dst-host dead',
    make: removeProgram,
    args: () => ['remove', 'h-/d-f.txt', '--dst-host', DEAD],
    code: 6,
    err: /cannot reach the proxy at 127\.0\.0\.1:1/,
  },
  {
    name: 'remove an unknown tag',
    make: removeProgram,
    args: () => ['remove', 'h-/d-never.txt:v1', '--dst-host', PROXY],
    code: 3,
  },
]

t.test('every flag: accepted values, refused values with a message and an exit code', async (t) => {
  const dir = await tempDir(t)
  for (const c of cases) {
    const r = await run(c.make, c.args(dir))
    t.equal(r.code, c.code, `${c.name}: exit ${c.code} (${r.err})`)
    if (c.err !== undefined) t.match(r.err, c.err, `${c.name}: message`)
    t.notMatch(r.err, /\n/, `${c.name}: one line`)
    t.notMatch(r.err, /\s+at .*:\d+:\d+/, `${c.name}: no stack`)
    t.equal(r.out, '', `${c.name}: nothing on stdout`)
  }
})

t.test('--version on every binary; push/pull --version V stays the tag version', async (t) => {
  for (const make of [pushProgram, pullProgram, removeProgram]) {
    for (const flag of ['--version', '-V']) {
      const r = await run(make, [flag])
      t.equal(r.code, 0)
      t.equal(r.out, softwareVersion())
    }
  }
  t.equal(softwareVersion(), JSON.parse(await readFile('package.json', 'utf8')).version)
  const dir = await tempDir(t)
  const src = await file(dir, 'versioned.txt')
  const json = await pushed(t, ['--version', '2026-11-21', src])
  t.match(json.tag, /-versioned\.txt:2026-11-21$/)
})

t.test('--help: an example per command and the exit codes', async (t) => {
  for (const [make, cmd] of [
    [pushProgram, 'push'],
    [pullProgram, 'pull'],
    [removeProgram, 'remove'],
  ] as const) {
    const r = await run(make, [cmd, '--help'])
    t.equal(r.code, 0)
    t.match(
      r.out,
      `Examples:\n  ${make === pushProgram ? 'PushCLI' : make === pullProgram ? 'PullCLI' : 'RemoveCLI'} ${cmd} `,
    )
    t.match(r.out, /Exit codes:\n\s+0 {2}success\n/)
    t.match(r.out, /124 {2}timeout/)
    const top = await run(make, ['--help'])
    t.match(top.out, 'Exit codes:')
  }
})

t.test('push: defaults, positional form, --json, --quiet, progress on a terminal only', async (t) => {
  const dir = await tempDir(t)
  const src = await file(dir, 'report.csv', randomBytes(3 << 20))

  const human = await run(pushProgram, ['push', '--dst-host', PROXY, '--src-host', 'h1', src])
  t.equal(human.code, 0, human.err)
  t.same(
    human.outLines.map((l) => l.split(':')[0]),
    ['tag', 'digest', 'size'],
  )
  const expected = Tag.from({ srcHost: 'h1', srcDir: dir, fileName: 'report.csv' }).toString()
  t.match(human.out, `tag:    ${expected}`, 'default version latest, tag from --src-host and the path')
  t.equal(human.err, '', 'not a terminal: nothing on stderr')

  const json = await run(pushProgram, [
    'push',
    '--json',
    '--res-desc',
    'EOD',
    '--dst-host',
    PROXY,
    '--src-host',
    'h1',
    src,
  ])
  t.equal(json.code, 0, json.err)
  t.equal(json.outLines.length, 1, 'one JSON object, one line')
  const obj = JSON.parse(json.out)
  t.same(Object.keys(obj).sort(), ['desc', 'digest', 'seconds', 'size', 'tag', 'uploaded'])
  t.match(obj, { tag: expected, size: 3 << 20, uploaded: false, desc: 'EOD' })
  t.match(obj.digest, /^sha256:[0-9a-f]{64}$/)
  t.type(obj.seconds, 'number')
  t.match(
    await new ProxyClient(PROXY).tagInfo(expected),
    { type: 'file', desc: 'EOD' },
    '--res-desc stored with the tag',
  )

  const quiet = await run(pushProgram, ['push', '--quiet', '--dst-host', PROXY, src], { tty: true })
  t.equal(quiet.code, 0)
  t.equal(quiet.out + quiet.err, '', '--quiet: nothing')
  t.same(quiet.status, [], '--quiet: no progress bar')

  const src2 = await file(dir, 'bar.bin', randomBytes(4 << 20))
  const tty = await run(pushProgram, ['push', '--dst-host', PROXY, src2], { tty: true })
  t.equal(tty.code, 0, tty.err)
  t.ok(
    tty.status.some((l) => /\[#+\.*\] +\d+% .*MiB \/ 4\.0 MiB/.test(l)),
    'a bar with bytes and total',
  )
  t.ok(
    tty.status.some((l) => /uploading/.test(l)),
    'the upload phase is shown',
  )
  t.equal(tty.status.at(-1), '', 'the bar is cleared before the result')
  t.ok(tty.status.length < 40, `redrawn at most ~10 times a second (${tty.status.length} draws)`)
  t.match(tty.out, /^tag: /)
})

t.test('an immutable version that points elsewhere is refused before any byte is uploaded', async (t) => {
  const dir = await tempDir(t)
  const src = await file(dir, 'fixed.csv', 'first content\n')
  await pushed(t, ['--version', 'v1', src])
  const again = await run(pushProgram, ['push', '--dst-host', PROXY, '--version', 'v1', src])
  t.equal(again.code, 0, 'the same content under the same version: fine')

  const changed = randomBytes(1 << 20)
  await writeFile(src, changed)
  const digest = Digest.fromBuffer(changed)
  const r = await run(pushProgram, ['push', '--json', '--dst-host', PROXY, '--version', 'v1', src])
  t.equal(r.code, 4, 'TAG_CONFLICT exits 4')
  t.match(
    r.err,
    /^PushCLI: .*-fixed\.csv:v1 already points at sha256:[0-9a-f]+, not at this content .*nothing was uploaded\)$/,
  )
  t.match(JSON.parse(r.out), { error: { code: 'TAG_CONFLICT' }, exitCode: 4 })
  const proxy = new ProxyClient(PROXY)
  t.equal(
    await proxy.hasBlob(DEFAULT_NAMESPACE, digest),
    undefined,
    'the new content never reached the origin',
  )

  const latest = await run(pushProgram, ['push', '--dst-host', PROXY, src])
  t.equal(latest.code, 0, 'latest is mutable')
})

t.test('a non-ASCII name end to end: push, pull by tag and by file name, remove', async (t) => {
  const dir = await tempDir(t)
  const bytes = randomBytes(200_000)
  const src = await file(dir, 'xxx交易数据.txt', bytes)
  const tag = '192.168.1.1-/usr/local/data-xxx交易数据.txt:latest'
  const json = await pushed(t, ['--tag', tag, src])
  t.equal(json.tag, tag)

  const out = join(dir, 'out')
  const byTag = await run(pullProgram, ['pull', '--json', '--dst-host', AGENT, '--dst-path', out, tag])
  t.equal(byTag.code, 0, byTag.err)
  t.match(JSON.parse(byTag.out), { tag, path: join(out, 'xxx交易数据.txt'), size: 200_000, source: 'swarm' })
  t.ok((await readFile(join(out, 'xxx交易数据.txt'))).equals(bytes))

  const out2 = join(dir, 'out2')
  const byName = await run(pullProgram, [
    'pull',
    '--dst-host',
    AGENT,
    '--dst-path',
    out2,
    '--src-host',
    '192.168.1.1',
    'xxx交易数据.txt',
  ])
  t.equal(byName.code, 0, byName.err)
  t.match(byName.out, `pulled ${tag} -> ${join(out2, 'xxx交易数据.txt')}`)
  t.ok((await readFile(join(out2, 'xxx交易数据.txt'))).equals(bytes))

  // RemoveCLI remove xxx.txt [args]: the positional name first, flags after.
  const removed = await run(removeProgram, [
    'remove',
    'xxx交易数据.txt',
    '--src-host',
    '192.168.1.1',
    '--dst-host',
    PROXY,
    '--json',
  ])
  t.equal(removed.code, 0, removed.err)
  t.match(JSON.parse(removed.out), { tag, removed: true })
  const gone = await run(pullProgram, [
    'pull',
    '--json',
    '--dst-host',
    AGENT,
    '--dst-path',
    join(dir, 'out3'),
    tag,
  ])
  t.equal(gone.code, 3, 'a removed tag is not found: exit 3')
  t.match(JSON.parse(gone.out), { error: { code: 'TAG_NOT_FOUND' }, exitCode: 3 })
  t.equal(gone.outLines.length, 1)
})

t.test('pull: the positional form, --is-cover true by default, ambiguous names listed', async (t) => {
  const dir = await tempDir(t)
  const src = await file(dir, 'dup.txt')
  await pushed(t, ['--src-host', 'hostA', src])
  await pushed(t, ['--src-host', 'hostB', src])
  const out = join(dir, 'out')
  const ambiguous = await run(pullProgram, ['pull', '--dst-host', AGENT, '--dst-path', out, 'dup.txt'])
  t.equal(ambiguous.code, 2)
  t.match(ambiguous.err, `PullCLI: 2 tags match file name "dup.txt"`)
  t.match(
    ambiguous.err,
    `${Tag.from({ srcHost: 'hostA', srcDir: dir, fileName: 'dup.txt' })}, ${Tag.from({ srcHost: 'hostB', srcDir: dir, fileName: 'dup.txt' })}`,
  )
  for (let i = 0; i < 2; i++) {
    const r = await run(pullProgram, [
      'pull',
      '--dst-host',
      AGENT,
      '--dst-path',
      out,
      '--src-host',
      'hostA',
      'dup.txt',
    ])
    t.equal(r.code, 0, `pull ${i + 1} into the same folder (cover): ${r.err}`)
  }
})

t.test('--has-flag F on push waits for FILE.flag (suffix from the client config)', async (t) => {
  const dir = await tempDir(t)
  const config = await file(dir, 'client.yaml', `proxy: ${PROXY}\nflag: { suffix: .done }\n`)
  const src = await file(dir, 'late.csv')
  const pushing = run(pushProgram, [
    'push',
    '--json',
    '--config',
    config,
    '--has-flag',
    'F',
    '--timeout',
    '30',
    src,
  ])
  const proxy = new ProxyClient(PROXY)
  await t.rejects(proxy.getTag(Tag.from({ srcHost: 'h', srcDir: dir, fileName: 'late.csv' })), {
    code: 'TAG_NOT_FOUND',
  })
  await writeFile(`${src}.done`, '')
  const r = await pushing
  t.equal(r.code, 0, r.err)
  t.match(JSON.parse(r.out).tag, /-late\.csv:latest$/)

  const never = await file(dir, 'never.csv')
  const timedOut = await run(pushProgram, [
    'push',
    '--dst-host',
    PROXY,
    '--has-flag',
    'F',
    '--timeout',
    '0.3',
    never,
  ])
  t.equal(timedOut.code, 124)
  t.equal(
    timedOut.err,
    `PushCLI: push of ${never} timed out after 0.3 s without progress (waiting for the flag file ${never}.flag)`,
  )
})

t.test('precedence: flag > environment > client config > built-in default', async (t) => {
  const dir = await tempDir(t)
  const src = await file(dir, 'prec.txt')
  const config = await file(dir, 'client.yaml', `proxy: ${PROXY}\ntimeouts: { push: 5 }\n`)

  const builtIn = await run(pushProgram, ['push', src])
  t.equal(builtIn.code, 6, 'no config: the built-in proxy 127.0.0.1:15000 (nothing there)')
  t.match(builtIn.err, 'the proxy at 127.0.0.1:15000')

  const fromDefaultFile = await run(pushProgram, ['push', src], { defaultConfigFile: config })
  t.equal(fromDefaultFile.code, 0, `file > default: ${fromDefaultFile.err}`)
  const fromConfigFlag = await run(pushProgram, ['push', '--config', config, src])
  t.equal(fromConfigFlag.code, 0, '--config names the file')
  const fromEnvConfig = await run(pushProgram, ['push', src], { env: { SHOAL_CONFIG: config } })
  t.equal(fromEnvConfig.code, 0, 'SHOAL_CONFIG names the file')

  const envOverFile = await run(pushProgram, ['push', '--config', config, src], {
    env: { SHOAL_PROXY: DEAD },
  })
  t.equal(envOverFile.code, 6, 'env > file')
  t.match(envOverFile.err, `the proxy at ${DEAD}`)

  const flagOverEnv = await run(pushProgram, ['push', '--dst-host', PROXY, src], {
    env: { SHOAL_PROXY: DEAD },
  })
  t.equal(flagOverEnv.code, 0, 'flag > env')

  const pullEnv = await run(pullProgram, ['pull', '--dst-path', join(dir, 'o'), 'h-/d-f.txt'], {
    env: { SHOAL_AGENT: DEAD },
  })
  t.match(pullEnv.err, `the agent at ${DEAD}`, 'SHOAL_AGENT for pull')

  const csgwEnv = await run(pushProgram, ['push', '--dst-type', 'csgw', src], {
    env: { SHOAL_CSGW: 'ftp://127.0.0.1:1/in' },
  })
  t.equal(csgwEnv.code, 6, 'SHOAL_CSGW is the CSGW push target (nothing listens: unavailable)')

  // The default --timeout comes from the config's timeouts; the flag overrides it.
  const short = await file(dir, 'short.yaml', `proxy: ${PROXY}\ntimeouts: { push: 0.3 }\n`)
  const noFlag = await file(dir, 'no-flag.csv')
  const cfgTimeout = await run(pushProgram, ['push', '--config', short, '--has-flag', 'F', noFlag])
  t.equal(cfgTimeout.code, 124)
  t.match(cfgTimeout.err, 'timed out after 0.3 s without progress', 'timeouts.push from the file')
  const flagTimeout = await run(pushProgram, [
    'push',
    '--config',
    short,
    '--has-flag',
    'F',
    '--timeout',
    '0.2',
    noFlag,
  ])
  t.match(flagTimeout.err, 'timed out after 0.2 s without progress', '--timeout over the file')

  const bad = await file(dir, 'bad.yaml', 'proxy: x\nagnet: y\n')
  const strict = await run(pushProgram, ['push', '--config', bad, src])
  t.equal(strict.code, 2)
  t.equal(strict.err, `PushCLI: invalid client config in ${bad}: unknown key "agnet"`)
})

t.test('one exit code table: EXIT_CODES, --help, docs/clients.md and the README agree', async (t) => {
  const docs = await readFile('docs/clients.md', 'utf8')
  const readme = await readFile('README.md', 'utf8')
  const help = (await run(pullProgram, ['pull', '--help'])).out
  const meanings = new Map(EXIT_CODE_MEANINGS)
  for (const [code, exit] of Object.entries(EXIT_CODES)) {
    t.ok(meanings.has(exit as number), `${code}: exit ${exit} has a meaning`)
    const row = docs.split('\n').find((l) => l.startsWith(`| ${exit} |`))
    t.match(row, `\`${code}\``, `docs/clients.md lists ${code} under exit ${exit}`)
  }
  for (const [exit, what] of EXIT_CODE_MEANINGS) {
    t.match(help, `${String(exit).padStart(3)}  ${what}`, `--help lists exit ${exit}`)
    t.match(readme, new RegExp(`\\b${exit} [a-z]`), `README lists exit ${exit}`)
  }
})
