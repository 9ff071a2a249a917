/**
 * A small path router: patterns like `/namespace/:ns/blobs/:digest`, matched segment by segment
 * on the raw path, then each segment percent-decoded. Splitting before decoding matters: a tag
 * arrives as one segment with its '/' written as %2F.
 */
import { ShoalError } from '../errors/index.js'
import type { Handler } from './types.js'

interface Route {
  method: string
  segments: string[]
  handler: Handler
}

export interface RouteMatch {
  handler: Handler
  params: Record<string, string>
}

export const MAX_PATH_BYTES = 8192

export class Router {
  private readonly routes: Route[] = []

  add(method: string, pattern: string, handler: Handler): this {
    this.routes.push({ method: method.toUpperCase(), segments: splitPath(pattern), handler })
    return this
  }
  get(pattern: string, handler: Handler): this {
    return this.add('GET', pattern, handler)
  }
  head(pattern: string, handler: Handler): this {
    return this.add('HEAD', pattern, handler)
  }
  put(pattern: string, handler: Handler): this {
    return this.add('PUT', pattern, handler)
  }
  post(pattern: string, handler: Handler): this {
    return this.add('POST', pattern, handler)
  }
  patch(pattern: string, handler: Handler): this {
    return this.add('PATCH', pattern, handler)
  }
  delete(pattern: string, handler: Handler): this {
    return this.add('DELETE', pattern, handler)
  }

  /** Finds the handler for method + raw path; HEAD falls back to GET (Node drops the body). */
  match(method: string, rawPath: string): RouteMatch {
    if (rawPath.length > MAX_PATH_BYTES) throw new ShoalError('BAD_REQUEST', 'request path too long')
    const parts = splitPath(rawPath)
    let pathMatched = false
    let fallback: RouteMatch | undefined
    for (const route of this.routes) {
      const params = matchSegments(route.segments, parts)
      if (!params) continue
      pathMatched = true
      if (route.method === method) return { handler: route.handler, params }
      if (method === 'HEAD' && route.method === 'GET' && !fallback)
        fallback = { handler: route.handler, params }
    }
    if (fallback) return fallback
    if (pathMatched) throw new ShoalError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${rawPath}`)
    throw new ShoalError('NOT_FOUND', `no route for ${method} ${rawPath}`)
  }
}

function splitPath(path: string): string[] {
  return path.split('/').filter((s, i) => i > 0 || s !== '')
}

function matchSegments(pattern: string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] as string
    const raw = parts[i] as string
    if (p.startsWith(':')) {
      if (raw === '') return undefined
      params[p.slice(1)] = decodeSegment(raw)
    } else if (p !== raw) {
      return undefined
    }
  }
  return params
}

function decodeSegment(raw: string): string {
  try {
    return decodeURIComponent(raw)
  } catch {
    throw new ShoalError('BAD_REQUEST', 'malformed percent-encoding in request path')
  }
}
