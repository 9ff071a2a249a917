#!/usr/bin/env node
// shoal-proxy: see `shoal-proxy --help`; the flags and start-up live in lib/cli/daemons.ts.
import { main } from '../lib/cli/common.js'
import { proxyCommand } from '../lib/cli/daemons.js'

await main(proxyCommand())
