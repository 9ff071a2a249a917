import { createHash } from 'node:crypto'
import t from 'tap'
import { accountOf, generateAccount } from '../../lib/onex/control/accounts.js'
import { keccak256, sponge256 } from '../../lib/onex/control/keccak.js'

t.test('keccak-256 matches the published vectors', async (t) => {
  t.equal(
    keccak256(Buffer.from('')).toString('hex'),
    'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470',
  )
  t.equal(
    keccak256(Buffer.from('abc')).toString('hex'),
    '4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45',
  )
  t.equal(
    keccak256(Buffer.from('The quick brown fox jumps over the lazy dog')).toString('hex'),
    '4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15',
  )
})

t.test('the same sponge with SHA3 padding equals node sha3-256 across block boundaries', async (t) => {
  for (let len = 0; len <= 300; len += 1) {
    const data = Buffer.alloc(len, len % 251)
    if (sponge256(data, 0x06).toString('hex') !== createHash('sha3-256').update(data).digest('hex'))
      t.fail(`length ${len}`)
  }
  t.pass('0..300 bytes')
})

t.test('Ethereum addresses of known private keys', async (t) => {
  t.equal(
    accountOf('0000000000000000000000000000000000000000000000000000000000000001').address,
    '0x7e5f4552091a69125d5dfcb7b8c2659029395bdf',
  )
  t.equal(
    accountOf('0000000000000000000000000000000000000000000000000000000000000002').address,
    '0x2b5ad5c4795c026514f8317c7a215e218dccd6cf',
  )
  const a = generateAccount()
  t.match(a.address, /^0x[0-9a-f]{40}$/)
  t.equal(accountOf(a.privateKey).address, a.address, 'a generated key derives its own address again')
})
