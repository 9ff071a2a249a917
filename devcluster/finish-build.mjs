// After tsc: make the built entry points executable so `bin` links work from a checkout.
import { chmodSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

const dir = new URL('../dist/cmd/', import.meta.url).pathname
for (const f of readdirSync(dir)) if (f.endsWith('.js')) chmodSync(join(dir, f), 0o755)
