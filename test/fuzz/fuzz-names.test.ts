/**
 * Properties of the parsers of names and ranges a client sends: the tag grammar (and its
 * object-key encoding), Content-Range of upload chunks, Range of reads, an S3 answer's
 * Content-Range. Each refuses garbage with its own ShoalError code only, keeps its bounds and
 * round-trips through its printer.
 */
import fc from 'fast-check'
import t from 'tap'
import { answeredRange } from '../../lib/backend/s3/range.js'
import { MAX_TAG_BYTES, Tag, tagFromKey, tagKey } from '../../lib/core/tag.js'
import { parseContentRange, parseRange } from '../../lib/origin/server/routes.js'
import { hostileChar, nearText, property, refusedOnlyWith } from './fuzz.js'

const segment = fc.oneof(
  fc
    .array(fc.oneof(hostileChar, fc.constantFrom('data', 'opt', 'x.txt', 'ref-data')), {
      minLength: 1,
      maxLength: 4,
    })
    .map((a) => a.join('')),
  fc.string({ minLength: 1, maxLength: 12 }),
)
/** Strings shaped like tags (host-/dir/dir-file:version) built from hostile pieces. */
const tagLike = fc
  .tuple(
    fc.oneof(fc.constantFrom('host', '10.0.0.1', '::1', 'h.example.com'), segment),
    fc.array(segment, { maxLength: 4 }),
    segment,
    fc.option(fc.oneof(fc.constantFrom('1', 'latest', 'v1.2+b', '-x'), segment), { nil: undefined }),
  )
  .map(([host, dirs, file, version]) => {
    const v = version === undefined ? '' : `:${version}`
    return `${host}-/${dirs.join('/')}-${file}${v}`
  })

t.test('tag grammar', async (t) => {
  property(
    t,
    'any string parses to a tag or is refused with INVALID_TAG',
    fc.property(fc.oneof(tagLike, nearText), (s) => {
      refusedOnlyWith(['INVALID_TAG'], () => Tag.parse(s))
    }),
  )
  property(
    t,
    'a parsed tag prints canonically, within the size limit, and parses back to the same parts',
    fc.property(tagLike, (s) => {
      const tag = refusedOnlyWith(['INVALID_TAG'], () => Tag.parse(s))
      if (!tag) return
      const printed = tag.toString()
      if (Buffer.byteLength(printed) > MAX_TAG_BYTES) throw new Error(`${printed} is over the limit`)
      const again = Tag.parse(printed)
      for (const k of ['srcHost', 'srcDir', 'fileName', 'version'] as const)
        if (again[k] !== tag[k]) throw new Error(`${k}: ${again[k]} !== ${tag[k]} for ${printed}`)
      if (again.toString() !== printed) throw new Error(`not canonical: ${printed}`)
    }),
  )
  property(
    t,
    "a tag's object key decodes back to the tag",
    fc.property(tagLike, (s) => {
      const tag = refusedOnlyWith(['INVALID_TAG'], () => Tag.parse(s))
      if (!tag) return
      const key = tagKey(tag.toString())
      if (/[/\\\0]/.test(key)) throw new Error(`key ${key} holds a path separator`)
      if (tagFromKey(key) !== tag.toString()) throw new Error(`${key} does not decode to ${tag}`)
    }),
  )
  property(
    t,
    'a key that is not an encoded tag is refused with INVALID_TAG',
    fc.property(nearText, (s) => {
      refusedOnlyWith(['INVALID_TAG'], () => tagFromKey(s))
    }),
  )
})

const digits = fc.oneof(
  fc.nat({ max: 1 << 20 }).map(String),
  fc.maxSafeNat().map(String),
  fc.constantFrom('', '0', '00', '-1', '1e3', '999999999999999', '9999999999999999', ' 1', '0x10'),
)
const rangeLike = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('', 'bytes ', 'bytes=', 'bytes  ', 'items '),
      digits,
      digits,
      fc.constantFrom('', '/*', '/10', '/', '/x'),
    )
    .map(([p, a, b, total]) => `${p}${a}-${b}${total}`),
  nearText,
)

t.test('Content-Range and Range', async (t) => {
  property(
    t,
    'an upload chunk Content-Range is start <= end, both safe, or INVALID_RANGE',
    fc.property(fc.option(rangeLike, { nil: undefined }), (h) => {
      const r = refusedOnlyWith(['INVALID_RANGE'], () => parseContentRange(h))
      if (!r) return
      if (!Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.end) || r.start < 0 || r.end < r.start)
        throw new Error(`${h} gave ${JSON.stringify(r)}`)
    }),
  )
  property(
    t,
    'a printed chunk range parses back, in both forms',
    fc.property(fc.nat({ max: 1e12 }), fc.nat({ max: 1e12 }), (a, n) => {
      const want = { start: a, end: a + n }
      for (const h of [`${a}-${a + n}`, `bytes ${a}-${a + n}/*`, `bytes ${a}-${a + n}/${a + n + 1}`]) {
        const got = parseContentRange(h)
        if (got.start !== want.start || got.end !== want.end)
          throw new Error(`${h} gave ${JSON.stringify(got)}`)
      }
    }),
  )
  property(
    t,
    'a read Range lies inside the blob or is INVALID_RANGE',
    fc.property(fc.option(rangeLike, { nil: undefined }), fc.nat({ max: 1 << 30 }), (h, size) => {
      const r = refusedOnlyWith(['INVALID_RANGE'], () => parseRange(h, size))
      if (!r) return
      if (r.start < 0 || r.end < r.start || r.end >= size)
        throw new Error(`${h} of ${size} gave ${JSON.stringify(r)}`)
    }),
  )
  property(
    t,
    "an S3 answer's Content-Range never throws and never claims bytes before 0",
    fc.property(
      fc.option(rangeLike, { nil: undefined }),
      fc.option(fc.nat(), { nil: undefined }),
      (h, len) => {
        const r = answeredRange(h, len)
        if (r && (r.start < 0 || !Number.isFinite(r.end))) throw new Error(`${h} gave ${JSON.stringify(r)}`)
      },
    ),
  )
})
