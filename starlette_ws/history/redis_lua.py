"""The Lua scripts of the Redis room store (`redis.RedisStore`): each call to the store is one
script, so that what it reads and writes of a room happens at once on the server.
"""

NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# A new epoch starts a new history: entries left from a lost one (the meta key evicted or
# expired, the stream not yet) must not be replayed under it.
# KEYS: meta, history. ARGV: a new epoch, rest, channel, history, seconds (ms), idle (ms).
APPEND = (
    NOW
    + """
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then redis.call('DEL', KEYS[2]) end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local offset = redis.call('HINCRBY', KEYS[1], 'last', 1)
local text = '{"offset":' .. string.format('%d', offset) .. ',"epoch":"' .. epoch .. '",' .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', 'o', offset, 'p', text)
redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', math.max(now - tonumber(ARGV[5]), 0)))
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[3], '#' .. string.format('%d', offset) .. ':' .. epoch .. '\\n' .. text)
return {offset, epoch, text}
"""
)

# KEYS: meta, history. ARGV: a new epoch, since ('' for none), the client's epoch ('' for none),
# seconds (ms), idle (ms). Returns the epoch, the last offset and, flat, the retained entries
# `base.replay_of` needs: those after `since` when `base.same_history` holds (spelled again
# here), all of them otherwise. Offsets in the stream are consecutive up to `last`, so the newest
# `last - since` entries hold every one after `since`.
REPLAY = (
    NOW
    + """
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then redis.call('DEL', KEYS[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
local since = 0
if ARGV[2] ~= '' and (ARGV[3] == '' or ARGV[3] == epoch) and tonumber(ARGV[2]) <= last then
    since = tonumber(ARGV[2])
end
local result = {epoch, last}
if last > since then
    local cutoff = string.format('%d', math.max(now - tonumber(ARGV[4]), 0))
    local newest = redis.call('XREVRANGE', KEYS[2], '+', cutoff, 'COUNT', last - since)
    for i = #newest, 1, -1 do
        local fields = newest[i][2]
        if tonumber(fields[2]) > since then
            table.insert(result, fields[2])
            table.insert(result, fields[4])
        end
    end
end
return result
"""
)

# Drops expired members and keeps the expiries of the room's keys and its place in the list of
# rooms in step with its latest member. KEYS: presence, presence-ids, rooms. ARGV[1]: the room.
SETTLE = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, member in ipairs(gone) do redis.call('HDEL', KEYS[2], member) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #top > 0 then
    local until_ms = string.format('%d', tonumber(top[2]))
    redis.call('PEXPIREAT', KEYS[1], until_ms)
    redis.call('PEXPIREAT', KEYS[2], until_ms)
    redis.call('ZADD', KEYS[3], until_ms, ARGV[1])
else
    redis.call('DEL', KEYS[2])
    redis.call('ZREM', KEYS[3], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local latest = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if #latest > 0 then redis.call('PEXPIREAT', KEYS[3], string.format('%d', tonumber(latest[2]))) end
"""

# KEYS: meta, history. Without its meta key, the room's next append or replay draws a new epoch.
RESET = "return redis.call('DEL', KEYS[1], KEYS[2])"

# KEYS: meta. Returns the epoch and the last offset, or nothing when the room has no history.
TOP = "return redis.call('HMGET', KEYS[1], 'epoch', 'last')"

# Whether a member other than ARGV[2] has client id `id` (after SETTLE: every one left is present).
OTHERS = """
local function others(id)
    local flat = redis.call('HGETALL', KEYS[2])
    for i = 1, #flat, 2 do
        if flat[i + 1] == id and flat[i] ~= ARGV[2] then return true end
    end
    return false
end
"""

# ARGV: room, member, client id, ttl (ms). Returns 1 when no other member has the client id.
PRESENT = (
    NOW
    + SETTLE
    + OTHERS
    + """
local arrived = not others(ARGV[3])
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[4])), ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
"""
    + SETTLE
    + "if arrived then return 1 else return 0 end"
)

# ARGV: room, member. Returns 1 when the member was there and no other member has its client id.
ABSENT = (
    NOW
    + SETTLE
    + OTHERS
    + """
local id = redis.call('HGET', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
local left = id and not others(id)
"""
    + SETTLE
    + "if left then return 1 else return 0 end"
)

# ARGV: room. Returns the client ids of the members present now.
MEMBERS = (
    NOW
    + SETTLE
    + """
local ids = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
    local id = redis.call('HGET', KEYS[2], member)
    if id then table.insert(ids, id) end
end
return ids
"""
)

# KEYS: rooms. ARGV: prefix. Returns room, count, that many client ids, room, ...
ROOMS = (
    NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local result = {}
for _, room in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
    local members = redis.call('ZRANGEBYSCORE', ARGV[1] .. 'presence:' .. room, '(' .. now, '+inf')
    local ids = {}
    for _, member in ipairs(members) do
        local id = redis.call('HGET', ARGV[1] .. 'presence-ids:' .. room, member)
        if id then table.insert(ids, id) end
    end
    if #ids > 0 then
        table.insert(result, room)
        table.insert(result, #ids)
        for _, id in ipairs(ids) do table.insert(result, id) end
    end
end
return result
"""
)
