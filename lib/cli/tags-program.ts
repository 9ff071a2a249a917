/**
 * `shoal tags history TAG`: who moved, created or deleted a tag, and when, newest first
 * (build-index's GET /tags/:tag/history, through the proxy unless --build-index names one).
 */
import { BuildIndexClient, type TagHistoryEntry } from '../build-index/client/index.js'
import { ProxyClient } from '../proxy/client/index.js'
import { Command } from './commander.js'
import { type Output, parseSeconds, stdio, usage } from './common.js'
import { addClientOptions, type ClientDeps, startClient } from './output.js'
import { withProgressTimeout } from './watchdog.js'

interface HistoryFlags {
  dstHost?: string
  buildIndex?: string
  limit: number
  timeout?: number
  config?: string
  json?: boolean
  quiet?: boolean
}

const MAX_LIMIT = 1000

function parseLimit(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT)
    throw usage(`invalid --limit ${value}: a whole number from 1 to ${MAX_LIMIT}`)
  return n
}

export function tagsCommand(io: Output = stdio, deps: ClientDeps = {}, name = 'tags'): Command {
  const cmd = new Command(name).description('Tags in build-index: their history.')
  const history = cmd
    .command('history')
    .description('Creations, moves and deletes of TAG, newest first: when, who, old → new digest.')
    .argument('<tag>', 'the tag, e.g. 10.0.0.7-/data/ref-prices.csv:latest')
    .option(
      '--dst-host <host:port>',
      "the proxy (default: $SHOAL_PROXY, the config's proxy, 127.0.0.1:15000)",
    )
    .option('--build-index <host:port>', 'ask this build-index directly instead of the proxy')
    .option('--limit <n>', `at most this many entries (1 to ${MAX_LIMIT})`, parseLimit, 100)
    .option(
      '--timeout <seconds>',
      'fail after this many seconds without an answer (0 = none)',
      parseSeconds,
      30,
    )
  addClientOptions(history)
    .addHelpText('after', '\nExample:\n  shoal tags history 10.0.0.7-/data/ref-prices.csv:latest --json\n')
    .action(async (tag: string, f: HistoryFlags) => {
      const { settings, reporter } = startClient(io, f, deps)
      const source = f.buildIndex
        ? new BuildIndexClient(f.buildIndex, { timeoutMs: 0 })
        : new ProxyClient(f.dstHost ?? settings.proxy, { timeoutMs: 0 })
      const {
        tag: name,
        entries,
        more,
      } = await withProgressTimeout(
        `reading the history of ${tag}`,
        f.timeout ?? 30,
        async (signal, progress) => {
          const entries: TagHistoryEntry[] = []
          let after: number | undefined
          let name = tag
          do {
            const limit = Math.min(f.limit - entries.length, MAX_LIMIT)
            const page = await source.history(tag, { after, limit, signal })
            progress.touch()
            name = page.tag
            entries.push(...page.entries)
            after = page.next
          } while (after !== undefined && entries.length < f.limit)
          return { tag: name, entries, more: after !== undefined }
        },
      )
      const lines = entries.map((e) => `${e.at}\t${e.action}\t${e.from ?? '-'} → ${e.to ?? '-'}\t${e.actor}`)
      if (entries.length === 0) lines.push(`no history recorded for ${name}`)
      if (more) lines.push(`… older entries; raise --limit (at most ${MAX_LIMIT})`)
      reporter.result({ tag: name, entries, more }, lines)
    })
  return cmd
}
