/**
 * Polls `get` until it returns a value (anything but undefined or false) and returns it; a
 * thrown error counts as "not yet" and is named in the timeout's message.
 */
export async function until<T>(
  what: string,
  get: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      const v = await get()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline)
      throw new Error(`not true within ${ms} ms: ${what}${last ? ` (${String(last)})` : ''}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
