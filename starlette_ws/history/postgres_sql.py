"""The SQL of the PostgreSQL room store (`postgres.PostgresStore`): its tables and statements.

Every statement names the deployment by its `prefix` parameter; no identifier is ever built
from configuration.
"""

TABLES = "the room tables (starlette_ws_rooms, starlette_ws_entries, starlette_ws_presence)"
SCHEMA = """
SELECT pg_advisory_xact_lock(hashtext('starlette_ws_rooms'));
CREATE TABLE IF NOT EXISTS starlette_ws_rooms (
    prefix text NOT NULL,
    room text NOT NULL,
    epoch text NOT NULL,
    last_offset bigint NOT NULL,
    PRIMARY KEY (prefix, room)
);
CREATE TABLE IF NOT EXISTS starlette_ws_entries (
    prefix text NOT NULL,
    room text NOT NULL,
    epoch text NOT NULL,
    "offset" bigint NOT NULL,
    payload text NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (prefix, room, epoch, "offset")
);
CREATE TABLE IF NOT EXISTS starlette_ws_presence (
    prefix text NOT NULL,
    room text NOT NULL,
    member text NOT NULL,
    client_id text NOT NULL,
    expires timestamptz NOT NULL,
    PRIMARY KEY (prefix, room, member)
);
"""

# $1 prefix, $2 room, $3 the epoch of a room created now, $4 rest, $5 history, $6 seconds,
# $7 channel. The payload is `base.payload` spelled in SQL. The trim cannot see the entry this
# statement inserts (one snapshot), and removes what a lost room row left under another epoch.
APPEND = """
WITH room AS (
    INSERT INTO starlette_ws_rooms AS r (prefix, room, epoch, last_offset) VALUES ($1, $2, $3, 1)
    ON CONFLICT (prefix, room) DO UPDATE SET last_offset = r.last_offset + 1
    RETURNING r.epoch, r.last_offset
), entry AS (
    SELECT epoch, last_offset AS "offset",
           '{"offset":' || last_offset::text || ',"epoch":"' || epoch || '",' || $4::text AS payload
    FROM room
), stored AS (
    INSERT INTO starlette_ws_entries (prefix, room, epoch, "offset", payload, at)
    SELECT $1, $2, epoch, "offset", payload, now() FROM entry
), trimmed AS (
    DELETE FROM starlette_ws_entries AS e USING entry
    WHERE e.prefix = $1 AND e.room = $2
      AND (e.epoch <> entry.epoch OR e."offset" <= entry."offset" - $5::bigint
           OR e.at < now() - make_interval(secs => $6::float8))
)
SELECT entry.epoch, entry."offset", entry.payload,
       pg_notify($7::text, '#' || entry."offset"::text || ':' || entry.epoch || E'\\n' || entry.payload)
FROM entry
"""

# The room's row (created, with offset 0, when the room has none: a client holds an epoch from
# its first visit on) and its retained entries, in one snapshot. Right after another process
# created the row, DO NOTHING can skip a row this snapshot does not see: no rows, ask again.
REPLAY = """
WITH created AS (
    INSERT INTO starlette_ws_rooms (prefix, room, epoch, last_offset) VALUES ($1, $2, $3, 0)
    ON CONFLICT (prefix, room) DO NOTHING
    RETURNING epoch, last_offset
), room AS (
    SELECT epoch, last_offset FROM created
    UNION ALL
    SELECT epoch, last_offset FROM starlette_ws_rooms WHERE prefix = $1 AND room = $2
)
SELECT room.epoch, room.last_offset, e."offset", e.payload
FROM room LEFT JOIN starlette_ws_entries AS e
    ON e.prefix = $1 AND e.room = $2 AND e.epoch = room.epoch
   AND e.at >= now() - make_interval(secs => $4::float8)
ORDER BY e."offset"
"""

# $1 prefix, $2 room, $3 the new epoch. Entries an append commits meanwhile under the old epoch
# are never replayed (replays read the room's epoch) and go with the next append or clean.
RESET = """
WITH gone AS (DELETE FROM starlette_ws_entries WHERE prefix = $1 AND room = $2)
UPDATE starlette_ws_rooms SET epoch = $3, last_offset = 0 WHERE prefix = $1 AND room = $2
"""
TOP = "SELECT epoch, last_offset FROM starlette_ws_rooms WHERE prefix = $1 AND room = $2"

# Presence changes of one client id in one room take turns (a transaction-long advisory lock), so
# that of two connections arriving or leaving at once in two processes exactly one is the first
# or the last. $1 prefix, $2 room, $3 the client id.
TURN = "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2 || chr(10) || $3))"

# $1 prefix, $2 room, $3 member, $4 client id, $5 ttl. True when no other member has the client id.
PRESENT = """
WITH others AS (
    SELECT 1 FROM starlette_ws_presence
    WHERE prefix = $1 AND room = $2 AND client_id = $4 AND member <> $3 AND expires > now()
), upsert AS (
    INSERT INTO starlette_ws_presence AS p (prefix, room, member, client_id, expires)
    VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::float8))
    ON CONFLICT (prefix, room, member) DO UPDATE SET client_id = excluded.client_id, expires = excluded.expires
)
SELECT NOT EXISTS (SELECT 1 FROM others) AS arrived
"""

# $1 prefix, $2 room, $3 member. Its client id, and true when no other member has it.
ABSENT = """
WITH gone AS (
    DELETE FROM starlette_ws_presence WHERE prefix = $1 AND room = $2 AND member = $3 RETURNING client_id
)
SELECT gone.client_id, NOT EXISTS (
    SELECT 1 FROM starlette_ws_presence AS p
    WHERE p.prefix = $1 AND p.room = $2 AND p.client_id = gone.client_id AND p.member <> $3 AND p.expires > now()
) AS left
FROM gone
"""

# Housekeeping for one deployment ($1 prefix, $2 seconds): entries past retention, members whose
# process stopped refreshing them, and rooms with neither entries nor members (a room made again
# later starts a new epoch). Returns how many rows of each went.
CLEAN = """
WITH old AS (
    DELETE FROM starlette_ws_entries WHERE prefix = $1 AND at < now() - make_interval(secs => $2::float8)
    RETURNING 1
), expired AS (
    DELETE FROM starlette_ws_presence WHERE prefix = $1 AND expires <= now() RETURNING 1
), idle AS (
    DELETE FROM starlette_ws_rooms AS r
    WHERE r.prefix = $1
      AND NOT EXISTS (
          SELECT 1 FROM starlette_ws_entries AS e
          WHERE e.prefix = $1 AND e.room = r.room AND e.at >= now() - make_interval(secs => $2::float8))
      AND NOT EXISTS (
          SELECT 1 FROM starlette_ws_presence AS p WHERE p.prefix = $1 AND p.room = r.room AND p.expires > now())
    RETURNING 1
)
SELECT (SELECT count(*) FROM old) AS entries, (SELECT count(*) FROM expired) AS members,
       (SELECT count(*) FROM idle) AS rooms
"""

CLIENT_OF = "SELECT client_id FROM starlette_ws_presence WHERE prefix = $1 AND room = $2 AND member = $3"

MEMBERS = """
SELECT DISTINCT client_id FROM starlette_ws_presence WHERE prefix = $1 AND room = $2 AND expires > now()
"""

# Listing the rooms also clears the deployment's expired members (a dead process's ghosts).
ROOMS = """
WITH expired AS (DELETE FROM starlette_ws_presence WHERE prefix = $1 AND expires <= now())
SELECT DISTINCT room, client_id FROM starlette_ws_presence WHERE prefix = $1 AND expires > now()
"""
