"""The queue's state transitions as Redis Lua scripts: each runs atomically, so no two workers, API processes or a
crash between two commands can leave a task half-moved.

Layout (all under `chimera:`): the task's hash `task:<id>`, its event stream `task-events:<id>`, a tombstone
`task-gone:<id>` (owner id) that outlives both so that an expired task reads as expired; per tenant and priority a
Redis stream `tasks:q:<tenant>:<priority>` with consumer group `workers`, whose pending-entries list is the set of
leases (a lease is an entry's idle time: heartbeats reset it with `XCLAIM … JUSTID`, `XAUTOCLAIM` takes entries
idle past the lease, the delivery count is the attempt). `tasks:ready` orders tenants with waiting entries by when
each was last served (`tasks:served`), so the claim script serves tenants least-recently-served first and skips a
tenant at `max_running_per_tenant` (`tasks:running` counts each tenant's leases). Keys are built inside the scripts,
which a single Redis (or a replicated primary) allows and Redis Cluster does not.
"""

# A task reaches a terminal state here and only here: once (a second call is a no-op), with exactly one terminal
# event, its hash and events expiring after the result TTL, and the tombstone a week longer.
_FINISH = """
local function finish(id, status, field, value, now, ttl, attempt)
  local rec = 'chimera:task:' .. id
  local current = redis.call('HGET', rec, 'status')
  if not current or current == 'succeeded' or current == 'failed' or current == 'cancelled' then return 0 end
  redis.call('HSET', rec, 'status', status, 'finished_at', now, field, value)
  local events = 'chimera:task-events:' .. id
  redis.call('XADD', events, '*', 'type', status, 'attempt', attempt, 'data', value)
  redis.call('EXPIRE', rec, ttl)
  redis.call('EXPIRE', events, ttl)
  redis.call('SET', 'chimera:task-gone:' .. id, redis.call('HGET', rec, 'owner_id'), 'EX', ttl + 604800)
  return 1
end

local function enqueue(id, tenant, priority)
  local stream = 'chimera:tasks:q:' .. tenant .. ':' .. priority
  if redis.call('EXISTS', stream) == 0 then  -- the stream and its group are made together, once
    redis.call('XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM')
  end
  redis.call('XADD', stream, '*', 'task', id, 'tenant', tenant)
  redis.call('SADD', 'chimera:tasks:streams', stream)
  redis.call('ZADD', 'chimera:tasks:ready', 'NX', redis.call('HGET', 'chimera:tasks:served', tenant) or 0, tenant)
  redis.call('RPUSH', 'chimera:tasks:bell', '1')
  redis.call('LTRIM', 'chimera:tasks:bell', -1000, -1)
end

local function owns(stream, entry, consumer)
  local p = redis.call('XPENDING', stream, 'workers', entry, entry, 1)
  return #p == 1 and p[1][2] == consumer
end

local function release(stream, entry, tenant)
  redis.call('XACK', stream, 'workers', entry)
  redis.call('XDEL', stream, entry)
  redis.call('HINCRBY', 'chimera:tasks:running', tenant, -1)
end
"""

# KEYS: record, idempotency key (or a placeholder). ARGV: id, tenant, priority, "<id> <digest>", idempotency TTL
# (0: no key), the queued event's JSON, then the hash's field/value pairs.
SUBMIT = (
    _FINISH
    + """
if ARGV[5] ~= '0' then
  local existing = redis.call('GET', KEYS[2])
  if existing then
    local id, digest = string.match(existing, '^(%S+) (%S+)$')
    local mine = string.match(ARGV[4], ' (%S+)$')
    if digest == mine then return {'existing', id} end
    return {'conflict', id}
  end
  redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('ZADD', 'chimera:tasks:owner:' .. redis.call('HGET', KEYS[1], 'owner_id'),
           redis.call('HGET', KEYS[1], 'created_at'), ARGV[1])
redis.call('XADD', 'chimera:task-events:' .. ARGV[1], '*', 'type', 'queued', 'attempt', '0', 'data', ARGV[6])
enqueue(ARGV[1], ARGV[2], ARGV[3])
return {'new', ARGV[1]}
"""
)

# ARGV: consumer, lease ms, max running per tenant (0: no cap), max attempts, now (s), result TTL (s).
# Returns {stream, entry id, task id, deliveries, tenant} or false. Entries idle past the lease come first (a
# crashed worker's task runs again before new work); one delivered more than max attempts is dead-lettered.
CLAIM = (
    _FINISH
    + """
local consumer, lease, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_attempts, now, ttl = tonumber(ARGV[4]), ARGV[5], ARGV[6]
for _, stream in ipairs(redis.call('SMEMBERS', 'chimera:tasks:streams')) do
  local cursor = '0-0'
  repeat
    local res = redis.call('XAUTOCLAIM', stream, 'workers', consumer, lease, cursor, 'COUNT', 1)
    cursor = res[1]
    for _, entry in ipairs(res[2]) do
      local p = redis.call('XPENDING', stream, 'workers', entry[1], entry[1], 1)
      local deliveries, id, tenant = p[1][4], entry[2][2], entry[2][4]
      if deliveries <= max_attempts then
        return {stream, entry[1], id, deliveries, tenant}
      end
      release(stream, entry[1], tenant)
      redis.call('XADD', 'chimera:tasks:dead', 'MAXLEN', '~', 10000, '*', 'task', id, 'attempts', deliveries - 1,
                 'at', now)
      finish(id, 'failed', 'error', cjson.encode({code = 'attempts_exhausted', message =
        'the task was started ' .. (deliveries - 1) .. ' times and never finished (its worker died each time)'}),
        now, ttl, deliveries - 1)
    end
  until cursor == '0-0'
end
for _, tenant in ipairs(redis.call('ZRANGE', 'chimera:tasks:ready', 0, -1)) do
  local running = tonumber(redis.call('HGET', 'chimera:tasks:running', tenant) or '0')
  if cap == 0 or running < cap then
    for _, priority in ipairs({'high', 'normal', 'low'}) do
      local stream = 'chimera:tasks:q:' .. tenant .. ':' .. priority
      local got = redis.call('EXISTS', stream) == 1 and
                  redis.call('XREADGROUP', 'GROUP', 'workers', consumer, 'COUNT', 1, 'STREAMS', stream, '>')
      if got and #got[1][2] > 0 then
        local entry = got[1][2][1]
        local seq = redis.call('INCR', 'chimera:tasks:seq')
        redis.call('ZADD', 'chimera:tasks:ready', seq, tenant)
        redis.call('HSET', 'chimera:tasks:served', tenant, seq)
        redis.call('HINCRBY', 'chimera:tasks:running', tenant, 1)
        redis.call('LPOP', 'chimera:tasks:bell')  -- this entry's wake-up token is spent
        return {stream, entry[1], entry[2][2], 1, tenant}
      end
    end
    redis.call('ZREM', 'chimera:tasks:ready', tenant)
  end
end
redis.call('DEL', 'chimera:tasks:bell')  -- nothing to claim: tokens left from a burst would only wake idle workers
return false
"""
)

# KEYS: stream. ARGV: consumer, entry, task id. Returns -1 when the lease is lost (another worker reclaimed the
# entry, or it was released), else 1 when a cancel was requested, 0 otherwise; a held lease is renewed.
HEARTBEAT = (
    _FINISH
    + """
if not owns(KEYS[1], ARGV[2], ARGV[1]) then return -1 end
redis.call('XCLAIM', KEYS[1], 'workers', ARGV[1], 0, ARGV[2], 'JUSTID')
if redis.call('HGET', 'chimera:task:' .. ARGV[3], 'cancel_requested') == '1' then return 1 end
return 0
"""
)

# KEYS: stream. ARGV: consumer, entry, task id, attempt, now, tenant, event data JSON. Marks the task running (the
# first start, or a retry) and returns its hash, unless it is no longer runnable (cancelled while queued, expired):
# then the entry is released and 0 returned (-1: the lease was lost).
START = (
    _FINISH
    + """
if not owns(KEYS[1], ARGV[2], ARGV[1]) then return -1 end
local rec = 'chimera:task:' .. ARGV[3]
local status = redis.call('HGET', rec, 'status')
if not status or status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  release(KEYS[1], ARGV[2], ARGV[6])
  return 0
end
local first = redis.call('HGET', rec, 'started_at')
redis.call('HSET', rec, 'status', 'running', 'attempt', ARGV[4])
if not first then redis.call('HSET', rec, 'started_at', ARGV[5]) end
local kind = (tonumber(ARGV[4]) > 1) and 'retry' or 'started'
if redis.call('HGET', rec, 'resume_approve') then kind = 'resumed' end
redis.call('XADD', 'chimera:task-events:' .. ARGV[3], '*', 'type', kind, 'attempt', ARGV[4], 'data', ARGV[7])
return redis.call('HGETALL', rec)
"""
)

# KEYS: stream. ARGV: consumer, entry, tenant, task id, status (terminal, or 'paused'), field, value JSON, now,
# TTL, attempt, pending JSON (paused). Returns 0 when the lease was lost: another attempt owns the task now.
COMPLETE = (
    _FINISH
    + """
if not owns(KEYS[1], ARGV[2], ARGV[1]) then return 0 end
release(KEYS[1], ARGV[2], ARGV[3])
if ARGV[5] == 'paused' then
  local rec = 'chimera:task:' .. ARGV[4]
  redis.call('HSET', rec, 'status', 'paused', 'pending', ARGV[11], ARGV[6], ARGV[7])
  redis.call('HDEL', rec, 'resume_approve')
  redis.call('XADD', 'chimera:task-events:' .. ARGV[4], '*', 'type', 'paused', 'attempt', ARGV[10],
             'data', ARGV[11])
  return 1
end
finish(ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10])
return 1
"""
)

# KEYS: stream. ARGV: consumer, entry, idle ms to set (lease - backoff), task id, error JSON, attempt.
# The entry stays leased to nobody alive: it is reclaimed after the backoff, with the next attempt number.
RETRY_LATER = (
    _FINISH
    + """
if not owns(KEYS[1], ARGV[2], ARGV[1]) then return 0 end
redis.call('XCLAIM', KEYS[1], 'workers', ARGV[1], 0, ARGV[2], 'IDLE', ARGV[3], 'JUSTID')
redis.call('HSET', 'chimera:task:' .. ARGV[4], 'status', 'queued', 'error', ARGV[5])
redis.call('XADD', 'chimera:task-events:' .. ARGV[4], '*', 'type', 'retry_scheduled', 'attempt', ARGV[6],
           'data', ARGV[5])
return 1
"""
)

# ARGV: task id, now, TTL, cancelled JSON. Queued or paused: cancelled at once (a queued entry is skipped when
# claimed); running: flagged, the worker stops between steps. Returns the status after the call.
CANCEL = (
    _FINISH
    + """
local rec = 'chimera:task:' .. ARGV[1]
local status = redis.call('HGET', rec, 'status')
if not status then return false end
if status == 'queued' or status == 'paused' then
  finish(ARGV[1], 'cancelled', 'error', ARGV[4], ARGV[2], ARGV[3], redis.call('HGET', rec, 'attempt'))
  return 'cancelled'
end
if status == 'running' and redis.call('HGET', rec, 'cancel_requested') ~= '1' then
  redis.call('HSET', rec, 'cancel_requested', '1')
  redis.call('XADD', 'chimera:task-events:' .. ARGV[1], '*', 'type', 'cancel_requested',
             'attempt', redis.call('HGET', rec, 'attempt'), 'data', '{}')
end
return status
"""
)

# ARGV: task id, approve ('1' / '0'). A paused task goes back to its tenant's queue, and 'resumed' is returned (the
# next delivery resumes it); any other task's status is returned unchanged.
RESUME = (
    _FINISH
    + """
local rec = 'chimera:task:' .. ARGV[1]
local status = redis.call('HGET', rec, 'status')
if status ~= 'paused' then return status or false end
redis.call('HSET', rec, 'status', 'queued', 'resume_approve', ARGV[2], 'pending', '[]')
local owner = cjson.decode(redis.call('HGET', rec, 'owner'))
enqueue(ARGV[1], owner['tenant'], redis.call('HGET', rec, 'priority'))
return 'resumed'
"""
)
