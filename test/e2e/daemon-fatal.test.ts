/**
 * A daemon hit by an error no handler caught exits non-zero with one line on stderr, and the
 * error's stack is in its log file (--log-file), not lost with the process.
 */
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../helpers/files.js'

const SCRIPT = join(import.meta.dirname, '..', 'helpers', 'crashing-daemon.ts')

function run(logFile: string, mode: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, logFile, mode], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stderr }))
  })
}

for (const [mode, message] of [
  ['exception', 'boom from a timer'],
  ['rejection', 'boom from a promise'],
] as const) {
  t.test(`an uncaught ${mode} is logged with its stack, then the daemon exits 1`, async (t) => {
    const logFile = join(await tempDir(t), 'daemon.log')
    const { code, stderr } = await run(logFile, mode)
    t.equal(code, 1, 'exit code 1')
    t.match(stderr, new RegExp(`^crashing-daemon: crashed \\(.*\\): ${message}; the stack is in the log\\n$`))
    const fatal = (await readFile(logFile, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { level: number; msg: string; err?: { stack?: string } })
      .find((entry) => entry.level === 60)
    t.ok(fatal, 'a fatal entry in the log file')
    t.match(fatal?.msg, message)
    t.match(fatal?.err?.stack, /crashing-daemon\.ts:\d+/, 'with the stack of where it was thrown')
  })
}
