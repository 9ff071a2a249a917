/**
 * Small pieces of the node runner: signalling a node's process group, reading its port file,
 * and PodHealthy conditions.
 */
import type { ChildProcess } from 'node:child_process'
import { ShoalError } from '../../errors/index.js'
import type { MinerCondition } from './assignment.js'

/** Signals the node's whole process group (it was spawned detached), or the process alone. */
export function signalGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  // Once it has exited its pid (and group id) may be another's: signal nothing then.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, sig)
  } catch {
    child.kill(sig)
  }
}

export function condition(
  status: MinerCondition['status'],
  reason: string,
  message?: string,
): MinerCondition {
  return {
    type: 'PodHealthy',
    status,
    reason,
    ...(message === undefined ? {} : { message }),
    lastTransitionTime: new Date().toISOString(),
  }
}

export function parsePortFile(text: string, pid: number | undefined): number {
  let doc: { port?: unknown; pid?: unknown }
  try {
    doc = JSON.parse(text)
  } catch {
    throw new ShoalError('UPSTREAM_ERROR', 'the node wrote a port file that is not JSON')
  }
  if (!Number.isInteger(doc.port) || (doc.port as number) < 1 || (doc.port as number) > 65535)
    throw new ShoalError('UPSTREAM_ERROR', 'the node wrote a port file without a valid port')
  if (doc.pid !== undefined && doc.pid !== pid)
    throw new ShoalError('UPSTREAM_ERROR', `the port file is another process's (pid ${String(doc.pid)})`)
  return doc.port as number
}
