/**
 * Where the queued recorder writes: the herd's own resource store (in-process, no HTTP), or a
 * remote apiserver (a daemon outside the herd, configured with its address and a token file).
 */
import { readFile } from 'node:fs/promises'
import { ResourceClient } from '../apiserver/client/index.js'
import type { ResourceStore } from '../apiserver/store/types.js'
import { ShoalError } from '../errors/index.js'
import { EVENTS_NAMESPACE, EventKind, type EventSpecT } from './kind.js'
import type { EventSink } from './recorder.js'

export class StoreEventSink implements EventSink {
  readonly describe = 'the resource store'

  constructor(
    private readonly store: ResourceStore,
    private readonly namespace = EVENTS_NAMESPACE,
  ) {}

  async write(name: string, spec: EventSpecT): Promise<void> {
    await this.store.create(EventKind, this.namespace, { metadata: { name }, spec })
  }
}

export class RemoteEventSink implements EventSink {
  readonly describe: string
  private client: ResourceClient<EventSpecT> | undefined
  private readonly namespace: string

  /** With `tokenFile`, the token is read by open() (the recorder's start): a bad file fails the start. */
  constructor(
    private readonly apiserver: string,
    private readonly opts: {
      token?: string
      tokenFile?: string
      timeoutMs?: number
      namespace?: string
    } = {},
  ) {
    this.describe = `the apiserver at ${apiserver}`
    this.namespace = opts.namespace ?? EVENTS_NAMESPACE
    if (!opts.tokenFile) this.client = this.clientWith(opts.token)
  }

  private clientWith(token: string | undefined): ResourceClient<EventSpecT> {
    const url = /^https?:\/\//.test(this.apiserver) ? this.apiserver : `http://${this.apiserver}`
    return new ResourceClient<EventSpecT>(url, EventKind, { token, timeoutMs: this.opts.timeoutMs ?? 5000 })
  }

  async open(): Promise<void> {
    if (this.opts.tokenFile) this.client = this.clientWith(await readTokenFile(this.opts.tokenFile))
  }

  async write(name: string, spec: EventSpecT): Promise<void> {
    if (!this.client)
      throw new ShoalError('UNAVAILABLE', 'the event sink is not open yet (its token is read at start)')
    await this.client.create(this.namespace, { metadata: { name }, spec })
  }
}

/** Reads an API token file (trimmed); a missing or empty file is a config error at start. */
export async function readTokenFile(file: string): Promise<string> {
  let text: string
  try {
    text = (await readFile(file, 'utf8')).trim()
  } catch (err) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `cannot read the API token file ${file}: ${(err as Error).message}`,
    )
  }
  if (text.length === 0) throw new ShoalError('CONFIG_INVALID', `the API token file ${file} is empty`)
  return text
}
