/**
 * docs/errors.md tells the truth about lib/errors: every code in ErrorCodes has one row in its
 * table, with the same HTTP status, and the table lists no code that does not exist; the exit
 * codes table lists every entry of EXIT_CODES. errorFromBody is the one decoder of error answers.
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { EXIT_CODES } from '../../lib/cli/common.js'
import { type ErrorCode, ErrorCodes } from '../../lib/errors/index.js'
import { errorFromBody } from '../../lib/http/index.js'

const doc = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../../docs/errors.md'), 'utf8')

/** The rows of the first markdown table after `heading`, as trimmed cells. */
function table(heading: string): string[][] {
  const lines = doc.split('\n')
  const start = lines.findIndex((l) => l.trim() === heading)
  if (start < 0) throw new Error(`docs/errors.md has no "${heading}"`)
  const rows: string[][] = []
  let inTable = false
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('## ')) break
    if (!line.trimStart().startsWith('|')) {
      if (inTable) break
      continue
    }
    inTable = true
    const cells = line
      .trim()
      .replace(/^\||\|$/g, '')
      .split('|')
      .map((c) => c.trim())
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue // the separator row
    rows.push(cells)
  }
  return rows.slice(1) // without the header row
}

t.test('docs/errors.md lists every error code once, with its HTTP status', async (t) => {
  const rows = table('## Error codes')
  const seen = new Map<string, number>()
  for (const [codeCell = '', statusCell = ''] of rows) {
    const code = /^`([A-Z_]+)`$/.exec(codeCell)?.[1]
    if (code === undefined) {
      t.fail(`a row's first cell is not a \`CODE\`: ${codeCell}`)
      continue
    }
    t.notOk(seen.has(code), `${code} is listed once`)
    seen.set(code, Number(statusCell))
  }
  for (const code of Object.keys(ErrorCodes) as ErrorCode[]) {
    t.ok(seen.has(code), `${code} is in docs/errors.md`)
    if (seen.has(code)) t.equal(seen.get(code), ErrorCodes[code], `${code}: status ${ErrorCodes[code]}`)
  }
  for (const code of seen.keys()) t.ok(Object.hasOwn(ErrorCodes, code), `${code} exists in ErrorCodes`)
  t.ok(
    rows.every((r) => r.length === 5 && r.every((c) => c.length > 0)),
    'every row has its five cells',
  )
})

t.test('docs/errors.md lists the CLI exit codes', async (t) => {
  const exits = new Map(table('## Exit codes').map(([exit = '', when = '']) => [Number(exit), when]))
  for (const code of [0, 1, 2]) t.ok(exits.has(code), `exit ${code} is listed`)
  for (const [code, exit] of Object.entries(EXIT_CODES)) {
    t.match(exits.get(exit as number), new RegExp(`\`${code}\``), `exit ${exit} is listed for ${code}`)
  }
})

t.test('errorFromBody: a Shoal body is the error the daemon raised; anything else by status', async (t) => {
  const coded = errorFromBody(
    409,
    JSON.stringify({ code: 'TAG_CONFLICT', message: 'no', details: { tag: 'x' } }),
    'build-index',
    'PUT',
    '/tags/x',
  )
  t.equal(coded.coded, true)
  t.match(coded.error, { code: 'TAG_CONFLICT', message: 'no', status: 409, details: { tag: 'x' } })

  const refused = errorFromBody(500, '<html>oops</html>', 'agent', 'GET', '/tags/a%3Ab')
  t.equal(refused.coded, false)
  t.match(refused.error, {
    code: 'UPSTREAM_REFUSED',
    status: 500,
    message: 'agent answered 500 to GET /tags/a:b',
  })
  t.match(errorFromBody(403, '', 'proxy', 'POST', '/x').error, { code: 'UPSTREAM_REFUSED', status: 403 })
  t.match(errorFromBody(404, 'nope', 'origin', 'GET', '/x').error, { code: 'NOT_FOUND', status: 404 })
  t.match(errorFromBody(503, '', 'tracker', 'GET', '/x').error, { code: 'UNAVAILABLE', status: 503 })
  const unknown = errorFromBody(500, JSON.stringify({ code: 'NO_SUCH_CODE', message: 'x' }), 'a', 'GET', '/')
  t.match(unknown, { coded: false, error: { code: 'UPSTREAM_REFUSED' } }, 'an unknown code is not trusted')
  const badDetails = errorFromBody(
    400,
    JSON.stringify({ code: 'BAD_REQUEST', message: 'm', details: 'x' }),
    'a',
    'GET',
    '/',
  )
  t.equal(badDetails.error.details, undefined, 'details that are not an object are dropped')
})
