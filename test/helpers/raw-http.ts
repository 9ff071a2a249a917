/** Raw TCP clients for probing HTTP servers the way a hostile or broken client would. */
import { connect, type Socket } from 'node:net'

export interface RawConnection {
  sock: Socket
  /** Resolves when the socket closed (either side). */
  closed: Promise<void>
  connected: Promise<void>
  /** Everything received so far, as latin1. */
  received(): string
}

export function rawConnect(port: number, localAddress = '127.0.0.1', host = '127.0.0.1'): RawConnection {
  const sock = connect({ port, host, localAddress })
  let received = ''
  sock.setEncoding('latin1')
  sock.on('data', (d: string) => {
    received += d
  })
  sock.on('error', () => {})
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()))
  const connected = new Promise<void>((resolve) => sock.once('connect', () => resolve()))
  return { sock, closed, connected, received: () => received }
}

/** Resolves true when `p` settles within `ms`, false otherwise (a deadline, not a measurement). */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  const settled = p.then(
    () => true as const,
    () => true as const,
  )
  const r = await Promise.race([settled, deadline])
  clearTimeout(timer)
  return r
}
