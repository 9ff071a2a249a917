/**
 * A process that writes to a file resource store until it is killed: argv[2] the folder. Each
 * create is printed ("ok <name>") only once the store acknowledged it, so the test knows what
 * must survive a SIGKILL. Compacts often, so the kill can land in a snapshot too.
 */
import { createResourceStore } from '../../lib/apiserver/store/index.js'
import { Widget, widget } from './resources.js'

const dir = process.argv[2] as string
const store = createResourceStore({ type: 'file', dir, historyEvents: 100, compactEveryRecords: 25 })
await store.start()
let i = 0
for (;;) {
  const batch = Array.from({ length: 4 }, () => `o${i++}`)
  await Promise.all(
    batch.map(async (name) => {
      await store.create(Widget, 'ns', widget(name, 'h', {}, { annotations: { pad: 'x'.repeat(2000) } }))
      process.stdout.write(`ok ${name}\n`)
    }),
  )
}
