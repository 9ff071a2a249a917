/**
 * The Lua script behind RedisPeerStore: every operation is one EVALSHA, so an announce (store,
 * sample, count) is one round trip and runs atomically, whichever tracker sends it.
 *
 * Keys (P = prefix .. 'tracker:'; one swarm per infohash IH):
 *   P s:IH:p   hash  "peerId ip" -> "<class><complete>|<port>|<zone>"   the records
 *   P s:IH:a   hash  "ip|port" -> "peerId ip"                     one record per address
 *   P s:IH:o   zset  "peerId ip" scored by announce sequence      eviction order (stalest first)
 *   P s:IH:c0..c2 zset "peerId ip" scored by expiry (ms)          one per class: sample, count, expire
 *   P s:IH:c0..c2:z:ZONE zset  the same, for the peers of one zone (sampled first for that zone)
 *   P swarms   zset  IH scored by its latest expiry               live swarms, for stats
 *   P g0..g2   zset  "IH peerId ip" scored by expiry              every peer by class: stats, pruning
 *   P order    zset  "IH peerId ip" scored by announce sequence   the global bound (stalest first)
 *   P seq      counter                                            announce sequence
 * Swarm keys carry a PEXPIRE at least as late as their latest member's expiry, so a swarm nobody
 * announces to any more disappears by itself; expired members are also pruned, a bounded batch
 * per call, and never handed out or counted (reads filter by score). The clock is Redis's own
 * (TIME), so trackers with skewed clocks agree on expiry.
 *
 * Keys are built inside the script (not declared as KEYS): fine on one Redis or a primary with
 * replicas; not Redis Cluster, whose slots a script's keys must declare.
 */
export const PEER_STORE_LUA = `
local pre = ARGV[1]
local op = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local PRUNE = 64

local function skeys(ih)
  local s = pre .. 's:' .. ih
  return s .. ':p', s .. ':a', s .. ':o', { s .. ':c0', s .. ':c1', s .. ':c2' }
end

local function detach(ih, key)
  local P, A, O, C = skeys(ih)
  local v = redis.call('HGET', P, key)
  if v then
    local cls = tonumber(string.sub(v, 1, 1))
    local port, zone = string.match(v, '^..|(%d+)|(.*)$')
    if zone ~= '' then redis.call('ZREM', C[cls + 1] .. ':z:' .. zone, key) end
    local ip = string.sub(key, 42)
    local addr = ip .. '|' .. port
    redis.call('HDEL', P, key)
    redis.call('ZREM', C[cls + 1], key)
    redis.call('ZREM', pre .. 'g' .. cls, ih .. ' ' .. key)
    if redis.call('HGET', A, addr) == key then redis.call('HDEL', A, addr) end
  end
  redis.call('ZREM', O, key)
  redis.call('ZREM', pre .. 'order', ih .. ' ' .. key)
  if redis.call('ZCARD', O) == 0 then redis.call('ZREM', pre .. 'swarms', ih) end
end

local function prune(ih)
  local _, _, _, C = skeys(ih)
  for i = 1, 3 do
    for _, key in ipairs(redis.call('ZRANGEBYSCORE', C[i], '-inf', now, 'LIMIT', 0, PRUNE)) do
      detach(ih, key)
    end
  end
end

-- Expired entries of every swarm, including swarms whose keys Redis already expired.
local function pruneGlobal()
  for cls = 0, 2 do
    local g = pre .. 'g' .. cls
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', g, '-inf', now, 'LIMIT', 0, PRUNE)) do
      detach(string.sub(m, 1, 40), string.sub(m, 42))
      redis.call('ZREM', g, m)
      redis.call('ZREM', pre .. 'order', m)
    end
  end
  redis.call('ZREMRANGEBYSCORE', pre .. 'swarms', '-inf', now)
end

local function counts(ih)
  local _, _, _, C = skeys(ih)
  local live = '(' .. now
  return redis.call('ZCOUNT', C[1], live, '+inf') + redis.call('ZCOUNT', C[2], live, '+inf'),
    redis.call('ZCOUNT', C[3], live, '+inf')
end

-- Up to limit live peers, class by class, each class a random sample (ZRANDMEMBER: O(limit),
-- never the whole swarm).
local function sample(ih, limit, zone, out)
  local P, _, _, C = skeys(ih)
  local taken = 0
  local seen = {}
  local function take(key, want)
    local got = redis.call('ZRANDMEMBER', key, want, 'WITHSCORES')
    for j = 1, #got, 2 do
      if taken < limit and not seen[got[j]] and tonumber(got[j + 1]) > now then
        local v = redis.call('HGET', P, got[j])
        if v then
          seen[got[j]] = true
          out[#out + 1] = got[j]
          out[#out + 1] = v
          taken = taken + 1
        end
      end
    end
  end
  for i = 1, 3 do
    if taken >= limit then break end
    local local_taken = 0
    if zone ~= '' then
      local before = taken
      take(C[i] .. ':z:' .. zone, limit - taken)
      local_taken = taken - before
    end
    -- Asking for the zone's peers again on top lets the class sample skip them and still fill up.
    if taken < limit then take(C[i], limit - taken + local_taken) end
  end
  return out
end

-- Never shortens: the key lives at least as long as its latest member (-1: no expiry yet, -2: absent).
local function extend(key, ttl)
  local left = redis.call('PTTL', key)
  if left == -1 or (left >= 0 and left < ttl) then redis.call('PEXPIRE', key, ttl) end
end

if op == 'announce' then
  local ih, peerId, ip, port = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local cls, complete, zone = tonumber(ARGV[7]), ARGV[8], ARGV[13]
  local ttl, maxSwarm, maxAll, limit = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
  local P, A, O, C = skeys(ih)
  prune(ih)
  pruneGlobal()
  local key = peerId .. ' ' .. ip
  detach(ih, key)
  local addr = ip .. '|' .. port
  local other = redis.call('HGET', A, addr)
  if other then detach(ih, other) end
  local exp = now + ttl
  redis.call('HSET', P, key, cls .. complete .. '|' .. port .. '|' .. zone)
  redis.call('HSET', A, addr, key)
  local seq = redis.call('INCR', pre .. 'seq')
  redis.call('ZADD', O, seq, key)
  redis.call('ZADD', pre .. 'order', seq, ih .. ' ' .. key)
  redis.call('ZADD', C[cls + 1], exp, key)
  local Z = nil
  if zone ~= '' then
    Z = C[cls + 1] .. ':z:' .. zone
    redis.call('ZADD', Z, exp, key)
  end
  redis.call('ZADD', pre .. 'g' .. cls, exp, ih .. ' ' .. key)
  redis.call('ZADD', pre .. 'swarms', 'GT', exp, ih)
  while redis.call('ZCARD', O) > maxSwarm do
    detach(ih, redis.call('ZRANGE', O, 0, 0)[1])
  end
  -- The bound over all swarms: the stalest announcers go first, a few per announce.
  for _ = 1, 8 do
    if redis.call('ZCARD', pre .. 'order') <= maxAll then break end
    local oldest = redis.call('ZRANGE', pre .. 'order', 0, 0)[1]
    if not oldest then break end
    detach(string.sub(oldest, 1, 40), string.sub(oldest, 42))
    -- Gone from the global sets even when its swarm's keys already expired.
    redis.call('ZREM', pre .. 'order', oldest)
    for c = 0, 2 do redis.call('ZREM', pre .. 'g' .. c, oldest) end
  end
  local ex = ttl + 1000
  for _, k in ipairs({ P, A, O, C[1], C[2], C[3] }) do extend(k, ex) end
  if Z then extend(Z, ex) end
  local c, inc = counts(ih)
  local out = { c, inc }
  if limit > 0 then sample(ih, limit, zone, out) end
  return out
elseif op == 'remove' then
  local ih, key = ARGV[3], ARGV[4]
  local P = skeys(ih)
  if redis.call('HEXISTS', P, key) == 1 then detach(ih, key) end
  local c, inc = counts(ih)
  return { c, inc }
elseif op == 'peers' then
  local ih, limit, zone = ARGV[3], tonumber(ARGV[4]), ARGV[5]
  local c, inc = counts(ih)
  return sample(ih, limit, zone, { c, inc })
elseif op == 'counts' then
  local c, inc = counts(ARGV[3])
  return { c, inc }
elseif op == 'stats' then
  local live = '(' .. now
  return {
    redis.call('ZCOUNT', pre .. 'swarms', live, '+inf'),
    redis.call('ZCOUNT', pre .. 'g0', live, '+inf'),
    redis.call('ZCOUNT', pre .. 'g1', live, '+inf'),
    redis.call('ZCOUNT', pre .. 'g2', live, '+inf'),
  }
end
return redis.error_reply('unknown peer store operation ' .. tostring(op))
`
