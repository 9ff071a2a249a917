#!/usr/bin/env node
// shoal-origin: see `shoal-origin --help`; the flags and start-up live in lib/cli/daemons.ts.
import { main } from '../lib/cli/common.js'
import { originCommand } from '../lib/cli/daemons.js'

await main(originCommand())
