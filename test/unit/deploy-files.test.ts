/**
 * The deployment files outside Kubernetes: the Dockerfiles (built from `npm ci`, run as a
 * non-root user, a HEALTHCHECK that runs the tested devcluster/healthcheck.mjs) and the systemd
 * units (their own user, the hardening options; `systemd-analyze verify` and its offline
 * security score where systemd-analyze is installed). No container engine runs here, so the
 * images themselves are exercised through their entry scripts (test/e2e/images.test.ts).
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import t from 'tap'

const exec = promisify(execFile)

for (const image of ['herd', 'agent']) {
  t.test(`Dockerfile.${image}`, async (t) => {
    const text = await readFile(`devcluster/Dockerfile.${image}`, 'utf8')
    const final = text.slice(text.lastIndexOf('\nFROM '))
    t.match(text, /RUN npm ci\b/, 'built from the lock file (npm ci)')
    const user = /^USER\s+(\S+)/m.exec(final)?.[1]
    t.ok(user && user !== 'root' && user !== '0', `the final stage runs as a non-root user (${user})`)
    t.ok(final.indexOf('USER ') < final.indexOf('\nCMD '), 'USER comes before the command')
    t.match(
      final,
      /HEALTHCHECK [^\n]*\\\n\s*CMD \["node", "\/opt\/shoal\/devcluster\/healthcheck\.mjs"/,
      'HEALTHCHECK runs healthcheck.mjs',
    )
    t.match(
      final,
      new RegExp(
        `CMD \\["/opt/shoal/devcluster/${image === 'herd' ? 'herd_start_processes' : 'agent_start'}\\.sh"\\]`,
      ),
    )
  })
}

const HARDENING = [
  'NoNewPrivileges=yes',
  'CapabilityBoundingSet=',
  'ProtectSystem=strict',
  'PrivateTmp=yes',
  'PrivateDevices=yes',
  'ProtectKernelTunables=yes',
  'ProtectKernelModules=yes',
  'ProtectControlGroups=yes',
  'RestrictNamespaces=yes',
  'RestrictSUIDSGID=yes',
  'LockPersonality=yes',
]

for (const unit of ['shoal-agent', 'shoal-herd']) {
  t.test(`examples/deploy/${unit}.service`, async (t) => {
    const file = `examples/deploy/${unit}.service`
    const lines = (await readFile(file, 'utf8')).split('\n').map((l) => l.trim())
    const user = lines.find((l) => l.startsWith('User='))?.slice(5)
    t.ok(user && user !== 'root', `runs as its own user (${user})`)
    for (const option of HARDENING) t.ok(lines.includes(option), option)
    const state = lines.find((l) => l.startsWith('StateDirectory='))?.slice('StateDirectory='.length)
    const exec_ = lines.find((l) => l.startsWith('ExecStart=')) ?? ''
    t.ok(
      state && exec_.includes(`--data-dir /var/lib/${state}`),
      'its data folder is its StateDirectory, the one place it may write',
    )

    const analyze = await exec('systemd-analyze', ['--version']).then(
      () => true,
      () => false,
    )
    if (!analyze) return t.comment('systemd-analyze is not installed: static checks only')
    const verify = await exec('systemd-analyze', ['verify', file]).then(
      (r) => r.stdout + r.stderr,
      (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}failed`,
    )
    t.equal(
      verify.replace(/^.*(No such file|not executable).*\n?/gm, '').trim(),
      '',
      'systemd-analyze verify: no complaint',
    )
    const security = await exec('systemd-analyze', ['security', '--offline=true', file]).then(
      (r) => r.stdout + r.stderr,
      (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`,
    )
    const score = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(security)?.[1])
    t.comment(`systemd-analyze security --offline: exposure ${score} (0 = locked down, 10 = exposed)`)
    t.ok(score <= 4, `exposure ${score} is at most 4 ("OK" or better)`)
  })
}
