/**
 * The genesis file in GoQuorum's format (seed 001's conventions): every fork block at 0,
 * `isQuorum: true`, raft (difficulty from the minerType table, no clique/istanbul section), the
 * generated accounts and the bootstrap account credited with the chain's balance (100 ETH =
 * "100000000000000000000" wei by default). Rendered deterministically (sorted alloc, fixed key
 * order) so the same chain always gives the same bytes and the same digest.
 */
import type { ChainSpecT } from '../kinds.js'

export interface GenesisInput {
  spec: ChainSpecT
  /** Addresses of the generated accounts (0x + 40 hex). */
  accounts: string[]
  /** From the minerType table. */
  difficulty: number
}

const ZERO32 = `0x${'0'.repeat(64)}`

export function renderGenesis(input: GenesisInput): Buffer {
  const { spec } = input
  const credited = [...input.accounts, ...(spec.bootstrapAccount ? [spec.bootstrapAccount] : [])]
  const alloc: Record<string, { balance: string }> = {}
  for (const a of [...new Set(credited.map((x) => x.toLowerCase().replace(/^0x/, '')))].sort())
    alloc[a] = { balance: spec.genesis.balance }
  const genesis = {
    alloc,
    coinbase: `0x${'0'.repeat(40)}`,
    config: {
      chainId: spec.genesis.chainId,
      homesteadBlock: 0,
      eip150Block: 0,
      eip150Hash: ZERO32,
      eip155Block: 0,
      eip158Block: 0,
      byzantiumBlock: 0,
      constantinopleBlock: 0,
      petersburgBlock: 0,
      istanbulBlock: 0,
      isQuorum: true,
      // OneX's own settings, ignored by GoQuorum (unknown config keys are): the example node
      // mines at this interval.
      onex: { minMineIntervalSeconds: spec.minMineIntervalSeconds },
    },
    difficulty: `0x${input.difficulty.toString(16)}`,
    extraData: ZERO32,
    gasLimit: '0xE0000000',
    mixhash: '0x00000000000000000000000000000000000000647572616c65787365646c6578',
    nonce: '0x0',
    parentHash: ZERO32,
    timestamp: '0x00',
  }
  return Buffer.from(`${JSON.stringify(genesis, null, 2)}\n`)
}
