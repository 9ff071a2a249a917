/**
 * Runs the user-facing programs in-process, the way the binaries do, capturing stdout, stderr
 * and the progress line. The environment is empty and the default client config absent unless
 * given, so neither the machine's /etc/shoal/client.yaml nor the runner's SHOAL_* leak in.
 */
import { join } from 'node:path'
import { type Output, runCli } from '../../lib/cli/common.js'
import type { ClientDeps } from '../../lib/cli/output.js'
import type { pushProgram } from '../../lib/cli/programs.js'

export type Make = typeof pushProgram

export interface Ran {
  code: number
  out: string
  err: string
  outLines: string[]
  status: string[]
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv
  defaultConfigFile?: string
  tty?: boolean
}

/** A runner whose absent default config file lives under `root`. */
export function cliRunner(root: string) {
  return async (make: Make, args: string[], opts: RunOptions = {}): Promise<Ran> => {
    const out: string[] = []
    const err: string[] = []
    const status: string[] = []
    const io: Output = {
      out: (l) => out.push(l),
      err: (l) => err.push(l),
      ...(opts.tty ? { status: (l: string) => status.push(l) } : {}),
    }
    const deps: ClientDeps = {
      env: opts.env ?? {},
      defaultConfigFile: opts.defaultConfigFile ?? join(root, 'no-client.yaml'),
    }
    const code = await runCli(make(io, deps), ['node', 'cli', ...args], io)
    return { code, out: out.join('\n'), err: err.join('\n'), outLines: out, status }
  }
}
