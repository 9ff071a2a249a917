/**
 * The node image unpacker against hostile tarballs: each is refused with BAD_IMAGE or
 * PAYLOAD_TOO_LARGE, and nothing is written outside the folder. A good image (the real packer's)
 * unpacks to the same files.
 */
import { lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { unpackTar } from '../../lib/onex/node/tar.js'
import { packExampleImage, type TarEntry, tarOf, tempDir } from '../helpers/onex-node.js'

const limits = { maxBytes: 1 << 20, maxEntries: 100 }

async function unpack(t: { teardown(fn: () => unknown): void }, tar: Buffer, lim = limits) {
  const dir = await tempDir(t)
  const root = join(dir, 'root')
  await mkdir(root)
  await writeFile(join(dir, 'image.tar'), tar)
  return { dir, root, run: () => unpackTar(join(dir, 'image.tar'), root, lim) }
}

const refused: [string, TarEntry[] | Buffer, string, RegExp][] = [
  ['.. in a name', [{ name: '../evil', data: 'x' }], 'BAD_IMAGE', /path with \.\./],
  ['.. deeper in a name', [{ name: 'a/../../evil', data: 'x' }], 'BAD_IMAGE', /path with \.\./],
  ['an absolute name', [{ name: '/tmp/evil', data: 'x' }], 'BAD_IMAGE', /absolute/],
  [
    'a symlink out of the folder',
    [{ name: 'l', type: '2', link: '../../etc' }],
    'BAD_IMAGE',
    /symlink pointing out/,
  ],
  [
    'an absolute symlink',
    [{ name: 'l', type: '2', link: '/etc/passwd' }],
    'BAD_IMAGE',
    /symlink pointing out/,
  ],
  [
    'a write through a symlink',
    [
      { name: 'sub', type: '5' },
      { name: 'l', type: '2', link: 'sub' },
      { name: 'l/x', data: 'x' },
    ],
    'BAD_IMAGE',
    /through a symlink/,
  ],
  ['a hard link', [{ name: 'h', type: '1', link: 'x' }], 'BAD_IMAGE', /hard link/],
  ['a FIFO', [{ name: 'f', type: '6' }], 'BAD_IMAGE', /FIFO/],
  ['a pax header', [{ name: 'p', type: 'x', data: '30 path=whatever\n' }], 'BAD_IMAGE', /pax/],
  [
    'a duplicate entry',
    [
      { name: 'a', data: '1' },
      { name: 'a', data: '2' },
    ],
    'BAD_IMAGE',
    /twice/,
  ],
  ['a size past the end', [{ name: 'a', data: 'x', size: 1 << 20 }], 'BAD_IMAGE', /truncated/],
  [
    'a file bigger than maxBytes',
    [{ name: 'big', data: Buffer.alloc((1 << 20) + 1) }],
    'PAYLOAD_TOO_LARGE',
    /more than/,
  ],
  [
    'more entries than maxEntries',
    Array.from({ length: 101 }, (_, i) => ({ name: `d${i}`, type: '5' })),
    'PAYLOAD_TOO_LARGE',
    /more than 100 entries/,
  ],
]

for (const [name, entries, code, message] of refused) {
  t.test(`refused: ${name}`, async (t) => {
    const tar = Buffer.isBuffer(entries) ? entries : tarOf(entries)
    const { dir, run } = await unpack(t, tar)
    await t.rejects(run(), { code, message })
    t.same((await readdir(dir)).sort(), ['image.tar', 'root'], 'nothing written beside the folder')
  })
}

t.test('refused: a header with a wrong checksum, and a tarball without its end', async (t) => {
  const tar = tarOf([{ name: 'a', data: 'hello' }])
  tar[0] = 'b'.charCodeAt(0) // the name changes, the checksum does not
  await t.rejects((await unpack(t, tar)).run(), { code: 'BAD_IMAGE', message: /wrong checksum/ })
  const cut = tarOf([{ name: 'a', data: 'hello' }], { end: false })
  await t.rejects((await unpack(t, cut)).run(), { code: 'BAD_IMAGE', message: /truncated/ })
  await t.rejects((await unpack(t, Buffer.from('not a tarball at all'))).run(), { code: 'BAD_IMAGE' })
})

t.test('accepted: folders, an executable, a symlink inside, then the real image', async (t) => {
  const { root, run } = await unpack(
    t,
    tarOf([
      { name: 'bin', type: '5' },
      { name: 'bin/run', data: '#!/bin/sh\n', mode: 0o4755 },
      { name: './lib/x.js', data: 'x' },
      { name: 'lib/link', type: '2', link: '../bin/run' },
    ]),
  )
  t.same(await run(), { files: 2, bytes: 11 })
  t.equal((await lstat(join(root, 'bin/run'))).mode & 0o7777, 0o755, 'executable, setuid dropped')
  t.ok((await lstat(join(root, 'lib/link'))).isSymbolicLink())

  const dir = await tempDir(t)
  const image = await packExampleImage(join(dir, 'image.tar'))
  const real = await unpack(t, image.bytes)
  await real.run()
  t.same((await readdir(real.root)).sort(), ['chain.mjs', 'manifest.json', 'node.mjs'])
  t.match(JSON.parse(await readFile(join(real.root, 'manifest.json'), 'utf8')), {
    command: ['{node}', 'node.mjs'],
  })
})
