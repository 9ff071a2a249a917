export { DEFAULT_JSON_LIMIT, parseJson, readBody, readJson, sendEmpty, sendError, sendJson } from './body.js'
export {
  type AnswerError,
  DEFAULT_RESPONSE_LIMIT,
  errorFromBody,
  errorFromResponse,
  HttpClient,
  type HttpClientOptions,
  type RequestOptions,
  type ResponseData,
  readLimited,
  urlPath,
} from './client.js'
export { clientKey, MAX_TRACKED_CLIENTS, type RateLimit, RateLimiter, rateLimited } from './rate-limit.js'
export { MAX_PATH_BYTES, Router } from './router.js'
export {
  DEFAULT_HTTP_LIMITS,
  type HttpLimits,
  HttpServer,
  type HttpServerOptions,
  suspendIdleTimeout,
} from './server.js'
export type { Handler, RouteContext } from './types.js'
