/**
 * The raw yardstick of the single-transfer figure: a plain TCP copy of a file to a file between
 * two processes, nothing else (no hashing, no protocol). Run as a child of the bench:
 *   recv <dst>           listens on 127.0.0.1:0, prints "port <n>", then "done <seconds> <bytes>"
 *                        timed from the accepted connection to the file closed
 *   send <port> <file>   connects and streams the file
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { connect, createServer } from 'node:net'
import { pipeline } from 'node:stream/promises'

const [mode, a, b] = process.argv.slice(2)
const READ_CHUNK = 1 << 20

if (mode === 'recv' && a) {
  const server = createServer({ noDelay: true }, (socket) => {
    const t0 = performance.now()
    server.close()
    const out = createWriteStream(a)
    pipeline(socket, out).then(
      () => process.stdout.write(`done ${(performance.now() - t0) / 1000} ${out.bytesWritten}\n`),
      (err: Error) => {
        process.stderr.write(`tcp-copy recv: ${err.message}\n`)
        process.exitCode = 1
      },
    )
  })
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`port ${(server.address() as { port: number }).port}\n`)
  })
} else if (mode === 'send' && a && b) {
  const socket = connect({ host: '127.0.0.1', port: Number(a), noDelay: true })
  pipeline(createReadStream(b, { highWaterMark: READ_CHUNK }), socket).catch((err: Error) => {
    process.stderr.write(`tcp-copy send: ${err.message}\n`)
    process.exitCode = 1
  })
} else {
  process.stderr.write('usage: tcp-copy recv <dst> | send <port> <file>\n')
  process.exitCode = 2
}
