/** Request/response body helpers with hard size limits: hostile bodies never grow memory. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ZodType } from '../config/index.js'
import { ShoalError, toShoalError } from '../errors/index.js'

export const DEFAULT_JSON_LIMIT = 1 << 20

export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) {
    throw new ShoalError(
      'PAYLOAD_TOO_LARGE',
      `request body of ${declared} bytes exceeds the limit of ${limit}`,
    )
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit)
      throw new ShoalError('PAYLOAD_TOO_LARGE', `request body exceeds the limit of ${limit} bytes`)
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks, size)
}

export async function readJson<T>(
  req: IncomingMessage,
  schema: ZodType<T>,
  limit = DEFAULT_JSON_LIMIT,
): Promise<T> {
  return parseJson(await readBody(req, limit), schema)
}

/** A request body already read, parsed as JSON and validated; BAD_REQUEST naming the problem. */
export function parseJson<T>(body: Buffer, schema: ZodType<T>): T {
  let value: unknown
  try {
    value = JSON.parse(body.toString('utf8'))
  } catch {
    throw new ShoalError('BAD_REQUEST', 'request body is not valid JSON')
  }
  const parsed = schema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new ShoalError(
      'BAD_REQUEST',
      `invalid request body: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`,
    )
  }
  return parsed.data
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = Buffer.from(JSON.stringify(body))
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length })
  res.end(data)
}

export function sendError(res: ServerResponse, err: unknown): void {
  const e = toShoalError(err)
  if (res.headersSent) {
    res.destroy(e)
    return
  }
  sendJson(res, e.status, e.toJSON())
}

export function sendEmpty(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | number> = {},
): void {
  res.writeHead(status, headers)
  res.end()
}
