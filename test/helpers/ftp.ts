/**
 * Real FTP servers for tests, all on loopback: ftp-srv in-process, vsftpd from Debian as a
 * child process (needs root, as CI has), and an FTP-aware TCP proxy in front of either that can
 * cut a download after exactly N data bytes (a dropped connection at a known point) or stall it.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FtpSrv } from 'ftp-srv'
import { silentLogger } from '../../lib/log/index.js'

export interface FtpServer {
  port: number
  /** The folder on disk that the server's `/` maps to (vsftpd: the anonymous root). */
  root: string
  /** The remote folder that can be written to. */
  writable: string
  close(): Promise<void>
}

async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const { port } = srv.address() as AddressInfo
  await new Promise((r) => srv.close(r))
  return port
}

/** A passive-port range below the ephemeral range (see STACK-NOTES), random to spread tests. */
function pasvRange(): { min: number; max: number } {
  const min = 20000 + Math.floor(Math.random() * 10000)
  return { min, max: min + 60 }
}

/** A self-signed certificate for 127.0.0.1 made with openssl(1), or undefined without it. */
export async function selfSignedCert(): Promise<{ key: string; cert: string } | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-cert-'))
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    )
    return {
      key: await readFile(join(dir, 'key.pem'), 'utf8'),
      cert: await readFile(join(dir, 'cert.pem'), 'utf8'),
    }
  } catch {
    return undefined
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export async function startFtpSrv(
  user: string,
  password: string,
  tls?: { key: string; cert: string },
): Promise<FtpServer> {
  const root = await mkdtemp(join(tmpdir(), 'shoal-ftpsrv-'))
  const port = await freePort()
  const { min, max } = pasvRange()
  const srv = new FtpSrv({
    url: `ftp://127.0.0.1:${port}`,
    pasv_url: '127.0.0.1',
    pasv_min: min,
    pasv_max: max,
    anonymous: false,
    greeting: ['shoal test ftp-srv'],
    // Explicit TLS (AUTH TLS) when a certificate is given.
    tls: tls ?? false,
    log: silentLogger(),
  })
  srv.on('login', ({ username, password: pass }, resolve, reject) => {
    if (username === user && pass === password) resolve({ root })
    else reject(new Error('bad login'))
  })
  await srv.listen()
  return {
    port,
    root,
    writable: '/',
    async close() {
      await srv.close()
      await rm(root, { recursive: true, force: true })
    },
  }
}

/** True when vsftpd can be run here (installed, and we are root). */
export function canRunVsftpd(): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v vsftpd || test -x /usr/sbin/vsftpd'], { stdio: 'ignore' })
  } catch {
    return false
  }
  return process.getuid?.() === 0
}

/**
 * vsftpd, anonymous only (local users would need PAM accounts on the machine): the anonymous
 * root belongs to root and is read-only, as vsftpd insists, with `/pub` writable by `ftp`.
 * Any other user name gets "530 This FTP server is anonymous only": a real login refusal.
 */
export async function startVsftpd(): Promise<FtpServer> {
  const base = await mkdtemp(join(tmpdir(), 'shoal-vsftpd-'))
  const root = join(base, 'root')
  const empty = join(base, 'empty')
  await mkdir(join(root, 'pub'), { recursive: true })
  await mkdir(empty)
  await chmod(base, 0o755)
  await chmod(root, 0o755)
  await chmod(empty, 0o755)
  const ftpUid = Number(execFileSync('id', ['-u', 'ftp']).toString().trim())
  const ftpGid = Number(execFileSync('id', ['-g', 'ftp']).toString().trim())
  await chown(join(root, 'pub'), ftpUid, ftpGid)
  const port = await freePort()
  const { min, max } = pasvRange()
  const conf = join(base, 'vsftpd.conf')
  await writeFile(
    conf,
    [
      'listen=YES',
      'listen_ipv6=NO',
      'listen_address=127.0.0.1',
      `listen_port=${port}`,
      'background=NO',
      'anonymous_enable=YES',
      'local_enable=NO',
      'no_anon_password=YES',
      `anon_root=${root}`,
      'write_enable=YES',
      'anon_upload_enable=YES',
      'anon_mkdir_write_enable=YES',
      'anon_other_write_enable=YES',
      'anon_world_readable_only=NO',
      'anon_umask=022',
      'pasv_enable=YES',
      'pasv_address=127.0.0.1',
      `pasv_min_port=${min}`,
      `pasv_max_port=${max}`,
      `secure_chroot_dir=${empty}`,
      'seccomp_sandbox=NO',
      'isolate=NO',
      'isolate_network=NO',
      'xferlog_enable=YES',
      `vsftpd_log_file=${join(base, 'vsftpd.log')}`,
      'dual_log_enable=NO',
      'use_localtime=NO',
      'ftpd_banner=shoal test vsftpd',
      '',
    ].join('\n'),
  )
  const child: ChildProcess = spawn('vsftpd', [conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d) => {
    stderr += String(d)
  })
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`vsftpd exited ${child.exitCode}: ${stderr}`)
    if (await answers(port)) break
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`vsftpd did not listen on ${port}: ${stderr}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    port,
    root,
    writable: '/pub',
    async close() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        await exited
      }
      await rm(base, { recursive: true, force: true })
    },
    // For debugging a failing test: the daemon's own log.
    log: () => readFile(join(base, 'vsftpd.log'), 'utf8').catch(() => ''),
  } as FtpServer
}

/** Connects and reads the 220 greeting: the daemon is serving, not just bound. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('data', (d) => {
      s.destroy()
      resolve(String(d).startsWith('220'))
    })
    s.once('error', () => resolve(false))
  })
}

export interface FtpProxyOptions {
  /** Once: after this many bytes of server → client data, cut that data and control connection. */
  cutDataAfter?: number
  /** After this many bytes of server → client data over all data connections, relay no more (sockets stay open). */
  stallDataAfter?: number
}

export interface FtpProxy {
  port: number
  /** Client commands seen (PASS shown as `PASS ***`). */
  commands: string[]
  cuts: number
  close(): Promise<void>
}

/**
 * A proxy that relays the control connection line by line and rewrites each EPSV/PASV answer
 * to a data relay of its own, so that it sees (and can cut) the data bytes at an exact count.
 */
export async function startFtpProxy(targetPort: number, opts: FtpProxyOptions = {}): Promise<FtpProxy> {
  const sockets = new Set<Socket>()
  const servers = new Set<Server>()
  const state: FtpProxy = { port: 0, commands: [], cuts: 0, close: async () => {} }
  let cutPending = opts.cutDataAfter
  const stallPending = opts.stallDataAfter
  let stalledSent = 0
  const track = (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    return s
  }
  const dataRelay = async (dataPort: number, control: Socket[]): Promise<number> => {
    const relay = createServer((down) => {
      track(down)
      relay.close()
      servers.delete(relay)
      const up = track(connect(dataPort, '127.0.0.1'))
      let sent = 0
      up.on('data', (chunk: Buffer) => {
        if (stallPending !== undefined) {
          // Counted over all data connections: after a reconnect nothing more gets through.
          const room = Math.max(0, stallPending - stalledSent)
          if (chunk.length >= room) {
            if (room > 0) down.write(chunk.subarray(0, room))
            stalledSent = stallPending
            up.pause()
            return
          }
          stalledSent += chunk.length
          down.write(chunk)
          return
        }
        if (cutPending === undefined) {
          down.write(chunk)
          return
        }
        const room = cutPending - sent
        if (chunk.length < room) {
          sent += chunk.length
          down.write(chunk)
          return
        }
        if (room > 0) down.write(chunk.subarray(0, room))
        cutPending = undefined
        state.cuts++
        // Everything goes at once, as when a link drops.
        down.end(() => {
          for (const s of [down, up, ...control]) s.destroy()
        })
      })
      down.on('data', (chunk: Buffer) => up.write(chunk))
      up.on('end', () => down.end())
      down.on('end', () => up.end())
    })
    servers.add(relay)
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r))
    return (relay.address() as AddressInfo).port
  }
  const proxy = createServer((client) => {
    track(client)
    const server = track(connect(targetPort, '127.0.0.1'))
    const control = [client, server]
    let buf = ''
    let chain = Promise.resolve()
    server.on('data', (chunk: Buffer) => {
      buf += chunk.toString('latin1')
      let nl = buf.indexOf('\n')
      while (nl >= 0) {
        const line = buf.slice(0, nl + 1)
        buf = buf.slice(nl + 1)
        chain = chain.then(async () => {
          client.write(await rewrite(line), 'latin1')
        })
        nl = buf.indexOf('\n')
      }
    })
    const rewrite = async (line: string): Promise<string> => {
      const epsv = /^229 (.*)\(\|\|\|(\d+)\|\)/.exec(line)
      if (epsv) return `229 ${epsv[1]}(|||${await dataRelay(Number(epsv[2]), control)}|)\r\n`
      const pasv = /^227 .*?(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(line)
      if (pasv) {
        const p = await dataRelay(Number(pasv[5]) * 256 + Number(pasv[6]), control)
        return `227 Entering Passive Mode (127,0,0,1,${p >> 8},${p & 255})\r\n`
      }
      return line
    }
    let cmd = ''
    client.on('data', (chunk: Buffer) => {
      cmd += chunk.toString('latin1')
      let nl = cmd.indexOf('\n')
      while (nl >= 0) {
        const line = cmd.slice(0, nl).trim()
        state.commands.push(/^PASS /i.test(line) ? 'PASS ***' : line)
        cmd = cmd.slice(nl + 1)
        nl = cmd.indexOf('\n')
      }
      server.write(chunk)
    })
    server.on('close', () => client.destroy())
    client.on('close', () => server.destroy())
  })
  servers.add(proxy)
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
  state.port = (proxy.address() as AddressInfo).port
  state.close = async () => {
    for (const s of sockets) s.destroy()
    await Promise.all([...servers].map((s) => new Promise((r) => s.close(r))))
  }
  return state
}
