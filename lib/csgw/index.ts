/** The CSGW (storage gateway) over FTP: the only importer of basic-ftp. */
export { type CsgwAddress, isCsgwAddress, parseCsgwAddress } from './address.js'
export type { CsgwEntry, CsgwOptions, CsgwProgress, TransferOptions } from './client.js'
export { CsgwClient, type DownloadOptions, type DownloadResult } from './download.js'
export { findNetrc, type NetrcEntry, parseNetrc, readNetrc } from './netrc.js'
