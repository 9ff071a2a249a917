export { formatBytes } from './bytes.js'
export { Digest, digestFile, printable } from './digest.js'
export { InfoHash } from './infohash.js'
export { MAX_METAINFO_BYTES, MetaInfo, pieceLengthFor } from './metainfo.js'
export { DEFAULT_NAMESPACE, NAMESPACE_RE, parseNamespace } from './namespace.js'
export { LATEST, MAX_TAG_BYTES, Tag, type TagParts, tagFromKey, tagKey } from './tag.js'
export {
  hasTagMeta,
  MAX_TAG_DESC_BYTES,
  MAX_TAG_META_BODY,
  parseTagMeta,
  parseTagMetaBody,
  TAG_TYPES,
  type TagMeta,
  type TagType,
  tagMetaOf,
} from './tag-meta.js'
