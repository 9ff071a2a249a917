/**
 * PullCLI list [PREFIX]: the tags a host can pull, through its agent, with what each one is
 * (file or directory), its digest and its description (`--res-desc` at push).
 */
import { AgentClient, type ResolvedTagInfo } from '../agent/client/index.js'
import { Tag } from '../core/index.js'
import { isShoalError } from '../errors/index.js'
import type { Command } from './commander.js'
import { type Output, parseSeconds, usage } from './common.js'
import { eachLimit } from './manifest.js'
import { addClientOptions, type ClientDeps, startClient } from './output.js'
import { withProgressTimeout } from './watchdog.js'

interface ListFlags {
  dstHost?: string
  limit: number
  timeout?: number
  config?: string
  json?: boolean
  quiet?: boolean
}

/** Tags described at once (one resolve each). */
const DESCRIBE_CONCURRENCY = 8
const MAX_LIMIT = 10_000

function parseLimit(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT)
    throw usage(`invalid --limit ${value}: a whole number from 1 to ${MAX_LIMIT}`)
  return n
}

export function addListCommand(program: Command, io: Output, deps: ClientDeps): void {
  const cmd = program
    .command('list')
    .description('List the tags whose text starts with PREFIX, with type, digest and description.')
    .argument('[prefix]', 'the start of the tags, e.g. 10.0.0.7-/data/ref (default: every tag)', '')
    .option(
      '--dst-host <host:port>',
      "the agent (default: $SHOAL_AGENT, the config's agent, 127.0.0.1:16002)",
    )
    .option('--limit <n>', `at most this many tags (1 to ${MAX_LIMIT})`, parseLimit, 1000)
    .option(
      '--timeout <seconds>',
      "fail after this many seconds without an answer (default: the config's timeouts.pull, 10; 0 = none)",
      parseSeconds,
    )
  addClientOptions(cmd)
    .addHelpText('after', '\nExample:\n  PullCLI list 10.0.0.7-/data/ref --json\n')
    .action(async (prefix: string, f: ListFlags) => {
      const { settings, reporter } = startClient(io, f, deps)
      // The watchdog is the deadline (--timeout 0: none).
      const agent = new AgentClient(f.dstHost ?? settings.agent, { timeoutMs: 0 })
      const { infos, more } = await withProgressTimeout(
        `listing ${prefix || 'the tags'}`,
        f.timeout ?? settings.timeouts.pull,
        async (signal, progress) => {
          const names: string[] = []
          let after: string | undefined
          do {
            const page = await agent.list(prefix, {
              after,
              limit: Math.min(f.limit - names.length, 1000),
              signal,
            })
            progress.touch()
            names.push(...page.tags)
            after = page.next
          } while (after && names.length < f.limit)
          const infos: (ResolvedTagInfo | undefined)[] = new Array(names.length)
          await eachLimit(
            names.map((n, i) => [n, i] as const),
            DESCRIBE_CONCURRENCY,
            async ([n, i]) => {
              // A tag removed since the listing is left out, not an error.
              infos[i] = await agent.resolveInfo(Tag.parse(n), signal).catch((err) => {
                if (isShoalError(err, 'TAG_NOT_FOUND')) return undefined
                throw err
              })
              progress.touch()
            },
          )
          return { infos: infos.filter((i) => i !== undefined), more: after !== undefined }
        },
      )
      const rows = infos.map((i) => ({
        tag: i.tag,
        digest: i.digest.toString(),
        type: i.type ?? 'file',
        ...(i.desc ? { desc: i.desc } : {}),
      }))
      const lines = rows.map((r) => `${r.tag}\t${r.type}\t${r.digest}${r.desc ? `\t${r.desc}` : ''}`)
      if (more) lines.push(`… more tags; raise --limit (at most ${MAX_LIMIT}) or give a longer PREFIX`)
      reporter.result({ tags: rows, more }, lines)
    })
}
