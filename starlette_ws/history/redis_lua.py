"""The Lua scripts of the Redis room store (`redis.RedisStore`): each call to the store is one
script, so that what it reads and writes of a room happens at once on the server.
"""

NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# A history gone back: the room's last offset is below one of its epoch a process was given
# (`seen_offset`, `seen_epoch`), or (`seen_again` '1') the process was given an offset of it twice,
# so entries it had were lost (a failover to a replica that had not received them, a restart from
# an older snapshot). Its meta key goes, so the next offset is given in a new epoch and never again
# in this one. `renewed` says whether it went.
GONE_BACK = """
local renewed = 0
if seen_epoch ~= '' and redis.call('HGET', KEYS[1], 'epoch') == seen_epoch
    and (seen_again == '1' or tonumber(redis.call('HGET', KEYS[1], 'last') or '0') < tonumber(seen_offset)) then
    redis.call('DEL', KEYS[1])
    renewed = 1
end
"""

# A new epoch starts a new history: entries left from a lost one (the meta key evicted or
# expired, the stream not yet) must not be replayed under it.
# KEYS: meta, history. ARGV: a new epoch, rest, channel, history, seconds (ms), idle (ms), and the
# last position this process was given ('' and '' for none).
APPEND = (
    NOW
    + "local seen_offset, seen_epoch, seen_again = ARGV[7], ARGV[8], '0'\n"
    + GONE_BACK
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

# Drops expired members and keeps the expiries of the room's keys in step with its latest member;
# `until_ms` is when that one expires ('0': none left). KEYS: presence, presence-ids.
SETTLE = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, member in ipairs(gone) do redis.call('HDEL', KEYS[2], member) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local until_ms = '0'
if #top > 0 then
    until_ms = string.format('%d', tonumber(top[2]))
    redis.call('PEXPIREAT', KEYS[1], until_ms)
    redis.call('PEXPIREAT', KEYS[2], until_ms)
else
    redis.call('DEL', KEYS[2])
end
"""

# The room ARGV[1] in the list of rooms KEYS[last] until `until_ms` ('0': out of it), which expires
# with its latest room. On one Redis it runs inside the presence scripts; on a cluster, where the
# list lives in a slot of its own, as a script of its own after them (`LISTED`).
LIST = """
local rooms = KEYS[#KEYS]
if until_ms ~= '0' then redis.call('ZADD', rooms, until_ms, ARGV[1]) else redis.call('ZREM', rooms, ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', rooms, '-inf', now)
local latest = redis.call('ZREVRANGE', rooms, 0, 0, 'WITHSCORES')
if #latest > 0 then redis.call('PEXPIREAT', rooms, string.format('%d', tonumber(latest[2]))) end
"""

# KEYS: rooms. ARGV: room, until (ms, '0': gone).
LISTED = NOW + "local until_ms = ARGV[2]\n" + LIST

# With a third key (the list of rooms, on one Redis) the presence scripts also keep the list.
SETTLE_LISTED = SETTLE + "if #KEYS == 3 then\n" + LIST + "end\n"

# KEYS: meta, history. ARGV: the last offset and epoch this process was given, '1' when it was
# given an offset twice. Returns 1 when the history had gone back: the next append or replay draws
# a new epoch.
RENEW = "local seen_offset, seen_epoch, seen_again = ARGV[1], ARGV[2], ARGV[3]\n" + GONE_BACK + "return renewed"

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

# KEYS: presence, presence-ids[, rooms]. ARGV: room, member, client id, ttl (ms). Returns 1 when
# no other member has the client id (0 otherwise), and when the room's latest member expires.
PRESENT = (
    NOW
    + SETTLE
    + OTHERS
    + """
local arrived = not others(ARGV[3])
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[4])), ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
"""
    + SETTLE_LISTED
    + "if arrived then return {1, until_ms} else return {0, until_ms} end"
)

# KEYS: presence, presence-ids[, rooms]. ARGV: room, member. Returns 1 when the member was there
# and no other member has its client id (0 otherwise), and when the room's latest member expires.
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
    + SETTLE_LISTED
    + "if left then return {1, until_ms} else return {0, until_ms} end"
)

# KEYS: presence, presence-ids[, rooms]. ARGV: room. Returns the client ids of the members present now.
MEMBERS = (
    NOW
    + SETTLE_LISTED
    + """
local ids = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
    local id = redis.call('HGET', KEYS[2], member)
    if id then table.insert(ids, id) end
end
return ids
"""
)

# KEYS: rooms. Returns the rooms with members now (on a cluster each room's members are asked for
# in its own slot).
LISTING = (
    NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
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

# A cluster's append: the entry is published on the room's shard channel, in the room's slot.
SHARDED_APPEND = APPEND.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
