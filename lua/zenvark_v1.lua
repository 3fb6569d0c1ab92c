#!lua name=zenvark_v1
--[[
Zenvark, the server half: one circuit breaker per set of keys, decided here.

Every function takes the same two keys, built by src/keys.ts, in one hash slot:
  KEYS[1]  <prefix>:{<id>}:state   hash: state, generation, window, lease, recovery progress,
                                   trial permits, the mode an operator set
  KEYS[2]  <prefix>:{<id>}:events  stream: one entry per transition (the audit log)
and, where an instance rule is in use (zv1_record with its last argument, zv1_isolate):
  KEYS[3]  <prefix>:{<id>}:instances        hash: the reporters (see "Reporters" below)
  KEYS[4]  <prefix>:{<id>}:instance-events  stream: instance-level entries (zv1_isolate);
                                   never published, never read by zv1_record

Writing functions share an ARGV header:
  ARGV[1] channel    where transitions and lease releases are published
  ARGV[2] actor      instance id (or operator name) that reports; written to the audit log
  ARGV[3] retention  approximate MAXLEN of the events stream (zv1_control: 0 trims nothing)

Answers come in two kinds. Expected outcomes are data: a status string first
('ok', 'opened', 'stale_gen', 'stale_token', ...). Misuse raises an error whose first
word is a stable code:
  ZV_BADARG     an argument is missing, malformed or out of range
  ZV_WRONGTYPE  a breaker key holds a value of another type
  ZV_CORRUPT    a breaker key holds a value this library did not write
  ZV_NOPERM     the user's ACL does not allow a command the function needs (named)
  ZV_REFUSED    Redis refused a command for another reason (named, with Redis's words)
Every argument, key and right is checked before the first write: Redis does not roll back
a function that fails halfway. Extra keys or arguments are refused too: a client that sends
more means something this revision does not do.

Time is always server time (TIME), in milliseconds, read once per call (server_time):
Redis 7.2+ and Valkey give a call one TIME throughout, Redis 7.0 lets it advance, and a
single reading makes a decision the same on both. Lease fencing tokens are drawn from that
clock too (zv1_acquire), so that a server that lost the last grants does not repeat them.
]]

-- Library functions as locals: in a Redis function every global lookup goes through a
-- protective metatable and costs more than the work itself. The libraries are not
-- reachable while the library loads, so the locals are bound on the first call.
local floor, max, min, abs
local find, match, gmatch, rep, sub, gsub, format
local concat, sort
local tonumber, tostring, type, pairs, pcall, error, unpack
local call, pcall_redis, error_reply, acl_check
local pack_struct, unpack_struct, encode_json

local function bind_globals()
  floor, max, min, abs = math.floor, math.max, math.min, math.abs
  find, match, gmatch, rep, sub, gsub, format = string.find, string.match, string.gmatch, string.rep, string.sub, string.gsub, string.format
  concat, sort = table.concat, table.sort
  tonumber, tostring, type, pairs, pcall, error, unpack = _G.tonumber, _G.tostring, _G.type, _G.pairs, _G.pcall, _G.error, _G.unpack
  call, pcall_redis, error_reply, acl_check = redis.call, redis.pcall, redis.error_reply, redis.acl_check_cmd
  pack_struct, unpack_struct, encode_json = struct.pack, struct.unpack, cjson.encode
end

local REVISION = 7

-- Limits: the bounds of src/limits.ts, under the same names. test/lua/limits.test.ts calls
-- every function with each bounded argument at its bounds and checks these values
-- against src/limits.ts.
local MAX_COUNT = 1000000000                -- calls: a count of a summary, a threshold, a minimum
local MAX_COUNT_WINDOW = 10000              -- calls in a count window
local MIN_DURATION_MS = 10                  -- a time window, ms
local MAX_DURATION_MS = 86400000
local TIME_BUCKETS = 20                     -- a time window is kept as this many buckets
local MAX_TTL_MS = 3600000                  -- a lease or a trial permit, ms
local MAX_RETENTION = 1000000               -- entries of the events stream
local MAX_TRIAL_PERMITS = 10000             -- trial calls per half-open period
local MAX_HEALTH_SUCCESS_THRESHOLD = 100    -- recovery checks in a row
local SAFE_INTEGER = 9007199254740991       -- generations, tokens, permit numbers: 2^53 - 1
local MAX_ACTOR_BYTES = 256
local MAX_CHANNEL_BYTES = 1024
local MAX_NOTE_BYTES = 512                  -- an operator's reason for a control
local MAX_MODE_MS = 2592000000              -- a control's expiry, ms (30 days)
local MAX_INSTANCES = 64                    -- reporter entries kept; minimum instances of the instance rule

local CLOSED = 'closed'
local OPEN = 'open'
local HALF_OPEN = 'half_open'
local KNOWN_STATES = { [CLOSED] = true, [OPEN] = true, [HALF_OPEN] = true }

-- Modes, beside the state: an operator's control (zv1_control) or normal operation ('').
-- A forced breaker keeps one of the three states, so that clients of earlier revisions,
-- which know only those, act on it as they would on any breaker in that state.
local FORCED_OPEN = 'forced_open'       -- open; recovery checks and the open wait pause
local FORCED_CLOSED = 'forced_closed'   -- closed; outcomes count, no rule trips it
local MONITOR = 'monitor'               -- closed; a rule reached is audited as would_open
local KNOWN_MODES = { [FORCED_OPEN] = true, [FORCED_CLOSED] = true, [MONITOR] = true }

-- Codes of single outcomes in a count window, oldest first.
local OK, FAIL, SLOW_OK, SLOW_FAIL = '0', '1', '2', '3'

-- A time window bucket: four doubles (see fold_time).
local BUCKET_BYTES = 32

local RATE_EPSILON = 1e-9
-- The time of the last recorded call is kept to this precision, in ms.
local LAST_CALL_STEP_MS = 100

-- Fields of the state hash, in groups: each function reads only the groups it needs.
--   state gen epoch since   the state, its generation, the life of the hash, entered at
--   run cfg w last          failure run, strategy spec, window data, last recorded call
--   lh lt lu                lease holder, last token granted, lease valid until
--   hcf hca hcs             failed recovery checks (or half-open periods) since the circuit
--                           opened, last check at, successful checks in a row
--   tp ts pn                half-open: trial permits out ('id:expiry,...'), successful
--                           trials, last permit number
--   mode                    '' or '<mode>:<until>': the mode and when it ends (server ms, 0
--                           for never), in one field so that zv1_record reads one more only
--   ma mn mt                who set the mode, their reason, when (server ms)
--   rn                      outcomes folded by calls that gave an instance rule (zv1_record's
--                           ARGV 14): a position counter, never reset (see "Reporters")
local CORE = { 'state', 'gen', 'epoch', 'since', 'mode' }
local WINDOW = { 'run', 'cfg', 'w', 'last' }
local LEASE = { 'lh', 'lt', 'lu' }
local RECOVERY = { 'hcf', 'hca', 'hcs' }
local TRIALS = { 'tp', 'ts', 'pn' }
local MODE_INFO = { 'ma', 'mn', 'mt' }
local REPORTING = { 'rn' }
local ALL_FIELDS = {
  'state', 'gen', 'epoch', 'since', 'mode', 'run', 'cfg', 'w', 'last', 'lh', 'lt', 'lu', 'hcf', 'hca', 'hcs', 'tp', 'ts', 'pn',
  'ma', 'mn', 'mt', 'rn',
}
local INT_FIELDS = {
  gen = true, since = true, run = true, last = true, lt = true, lu = true, hcf = true, hca = true, hcs = true, ts = true, pn = true,
  mt = true, rn = true,
}
-- Fields added after revision 1: a hash written by an earlier revision reads them as these.
local LATER_FIELDS = { hcs = '0', tp = '', ts = '0', pn = '0', mode = '', ma = '', mn = '', mt = '0', rn = '0' }
-- What a control's transition writes besides the transition's own fields.
local MODE_FIELDS = { 'mode', 'ma', 'mn', 'mt' }
local ALL_GROUPS = { CORE, WINDOW, LEASE, RECOVERY, TRIALS, MODE_INFO }
local RECORD_GROUPS = { CORE, WINDOW }
local RULE_RECORD_GROUPS = { CORE, WINDOW, REPORTING }
local LEASE_GROUPS = { CORE, LEASE }
local HEALTH_GROUPS = { CORE, LEASE, RECOVERY }
local TRIAL_GROUPS = { CORE, RECOVERY, TRIALS }

---------------------------------------------------------------------------------------
-- Errors and argument parsing
---------------------------------------------------------------------------------------

-- Raised errors carry a marker so that guard() can tell ours from Redis's own.
local function fail(code, message)
  error({ zv = code .. ' ' .. message })
end

local function show(value)
  local text = tostring(value)
  if #text > 40 then
    text = sub(text, 1, 37) .. '...'
  end
  return "'" .. text .. "'"
end

-- Whole numbers up to 2^53 are exact in a double: they are printed as integers.
local function format_number(n)
  if n == floor(n) and abs(n) <= SAFE_INTEGER + 1 then
    return format('%d', n)
  end
  return format('%.6g', n)
end

-- ARGV[i] as sent; refused when it is absent.
local function required_arg(args, i, name)
  local raw = args[i]
  if raw == nil then
    fail('ZV_BADARG', name .. ' is missing (ARGV[' .. i .. '])')
  end
  return raw
end

-- The whole number a text holds, or nil: tonumber() and a test that it is whole, remembered.
-- Callers look a text up in `integers` first and call to_integer() only for a text it does
-- not hold. tonumber() runs strtod twice on a string (to test it, then to convert it), and
-- the texts a call parses recur from call to call (counts, generations, stored times): a
-- table lookup costs a fraction of that. A library keeps its upvalues between calls; the
-- memory holds short texts only and is bounded.
local integers, integers_count = {}, 0
local REMEMBERED_INTEGERS, REMEMBERED_TEXT_BYTES = 1000, 24

local function to_integer(text)
  local n = tonumber(text)
  if not n or n % 1 ~= 0 then
    return nil
  end
  if #text <= REMEMBERED_TEXT_BYTES then
    if integers_count >= REMEMBERED_INTEGERS then
      integers, integers_count = {}, 0
    end
    integers[text] = n
    integers_count = integers_count + 1
  end
  return n
end

-- An integer in [min, max]. tonumber() alone is the cheapest strict-enough parse: what
-- it takes that a decimal pattern would not ('0x10', '1e3') still has to be a whole
-- number in range. (`args[i] or required_arg(...)`: the call only when it is missing.)
local function int_arg(args, i, name, min, max)
  local raw = args[i] or required_arg(args, i, name)
  local n = integers[raw] or to_integer(raw)
  if not n then
    fail('ZV_BADARG', name .. ' must be an integer, got ' .. show(raw))
  end
  if n < min or n > max then
    fail('ZV_BADARG', name .. ' must be in [' .. format_number(min) .. ', ' .. format_number(max) .. '], got ' .. raw)
  end
  return n
end

-- An integer in [min, max], or `default` when the argument is absent (added in a later
-- revision: older clients do not send it).
local function opt_int_arg(args, i, name, min, max, default)
  if args[i] == nil then
    return default
  end
  return int_arg(args, i, name, min, max)
end

-- A rate in (0, 1].
local function rate_arg(args, i, name)
  local raw = required_arg(args, i, name)
  local n = tonumber(raw)
  if n == nil or n ~= n or not match(raw, '^[%d%.eE%+%-]+$') then
    fail('ZV_BADARG', name .. ' must be a number, got ' .. show(raw))
  end
  if n <= 0 or n > 1 then
    fail('ZV_BADARG', name .. ' must be in (0, 1], got ' .. raw)
  end
  return n
end

local function text_arg(args, i, name, max_length)
  local raw = args[i] or required_arg(args, i, name)
  if #raw == 0 or #raw > max_length then
    fail('ZV_BADARG', name .. ' must be 1 to ' .. max_length .. ' bytes long, got ' .. #raw)
  end
  return raw
end

local function enum_arg(args, i, name, allowed)
  local raw = required_arg(args, i, name)
  if not allowed[raw] then
    local names = {}
    for k in pairs(allowed) do
      names[#names + 1] = k
    end
    sort(names)
    fail('ZV_BADARG', name .. ' must be one of ' .. concat(names, ', ') .. ', got ' .. show(raw))
  end
  return raw
end

local KEY_NAMES = {
  [2] = 'state, events', [3] = 'state, events, instances', [4] = 'state, events, instances, instance-events',
}

-- KEYS must be the breaker's two keys (or the `nkeys` a function takes, see KEY_NAMES), and
-- ARGV at most `most` values: a client that sends more means something this revision does not do.
local function check_counts(keys, args, most, nkeys)
  nkeys = nkeys or 2
  if #keys ~= nkeys then
    fail('ZV_BADARG', 'expected ' .. nkeys .. ' keys (' .. KEY_NAMES[nkeys] .. '), got ' .. #keys)
  end
  if #args > most then
    fail('ZV_BADARG', 'expected at most ' .. most .. ' arguments, got ' .. #args)
  end
end

-- The header of the call being made, in a table kept between calls: every field is set
-- afresh, and nothing keeps the table past its call (allocating a table per call costs
-- more than filling it, and more work for the garbage collector).
local call_header = {}

-- The ARGV header of every writing function, which takes at most `most` arguments and
-- `nkeys` keys (default 2); a retention of 0 (zv1_control and zv1_isolate take it:
-- `min_retention`) trims nothing.
local function header(keys, args, most, min_retention, nkeys)
  check_counts(keys, args, most, nkeys)
  local h = call_header
  h.state_key = keys[1]
  h.events_key = keys[2]
  h.channel = text_arg(args, 1, 'channel', MAX_CHANNEL_BYTES)
  h.actor = text_arg(args, 2, 'actor', MAX_ACTOR_BYTES)
  h.retention = int_arg(args, 3, 'retention', min_retention or 1, MAX_RETENTION)
  return h
end

---------------------------------------------------------------------------------------
-- Commands Redis refuses
---------------------------------------------------------------------------------------

-- Redis refused `command` (its error reply is `reply`): say which command, on which key
-- or channel, and whether this user's ACL is why, instead of a line of this library.
local function refused(reply, command, target)
  if not acl_check(command, target) then
    fail('ZV_NOPERM', 'the user may not run ' .. command .. ' on ' .. target .. ' (ACL); see the README, "Least privilege"')
  end
  fail('ZV_REFUSED', command .. ' on ' .. target .. ' was refused: ' .. tostring(reply.err))
end

-- Before the first write of a path that writes with these commands: the user may run
-- each of them (target: the key or channel). Checked up front so that a missing right
-- cannot leave half a transition written.
local function check_rights(commands)
  for i = 1, #commands, 2 do
    if not acl_check(commands[i], commands[i + 1]) then
      fail('ZV_NOPERM', 'the user may not run ' .. commands[i] .. ' on ' .. commands[i + 1]
        .. ' (ACL); see the README, "Least privilege"')
    end
  end
end

-- A command that reads or writes one key; a refusal is named (see refused).
local function checked(command, key, ...)
  local reply = pcall_redis(command, key, ...)
  if type(reply) == 'table' and reply.err then
    refused(reply, command, key)
  end
  return reply
end

---------------------------------------------------------------------------------------
-- Time and the state hash
---------------------------------------------------------------------------------------

local function append_all(target, items)
  for i = 1, #items do
    target[#target + 1] = items[i]
  end
  return target
end


-- Server time: milliseconds, and the same time to the microsecond as TIME's reply
-- ({seconds, microseconds}), from which a state hash written for the first time takes the
-- epoch that names its incarnation (fresh_state): the text is made only then. TIME's
-- numeric strings convert in arithmetic.
-- Called once per function call: nothing may depend on TIME advancing within a call.
local function server_time()
  local t = pcall_redis('TIME')
  if t.err then
    if not acl_check('TIME') then
      fail('ZV_NOPERM', 'the user may not run TIME (ACL); see the README, "Least privilege"')
    end
    error(t)
  end
  return t[1] * 1000 + floor(t[2] / 1000), t
end

local function fresh_state(now, micros)
  return {
    state = CLOSED, gen = 0, epoch = micros[1] .. format('%06d', micros[2]), since = now, mode = '', run = 0, cfg = '', w = '',
    last = -1, lh = '', lt = 0, lu = 0, hcf = 0, hca = now, hcs = 0, tp = '', ts = 0, pn = 0, ma = '', mn = '', mt = 0, rn = 0,
    new = true,
  }
end

local function corrupt(key, field, value)
  fail('ZV_CORRUPT', key .. ' field ' .. field .. ' holds ' .. show(value) .. ', not written by zenvark')
end

-- The field names of a list of groups, joined on its first use (names_of[groups] then
-- holds them): the lists are constants, and a library keeps its upvalues between calls.
local names_of = {}

local function field_names(groups)
  local names = {}
  for g = 1, #groups do
    append_all(names, groups[g])
  end
  names_of[groups] = names
  return names
end

-- Checks HMGET's `values` of the fields `names` and stores them in `st` (numbers as numbers).
local function take_fields(key, st, names, values)
  for i = 1, #names do
    local name, value = names[i], values[i] or LATER_FIELDS[names[i]]
    if not value then
      fail('ZV_CORRUPT', key .. ' has no field ' .. name .. ': not written by zenvark')
    end
    if INT_FIELDS[name] then
      local n = integers[value] or to_integer(value)
      if not n then
        corrupt(key, name, value)
      end
      value = n
    end
    st[name] = value
  end
  return st
end

-- A stored mode ('<mode>:<until>') as the mode and its end (server ms, 0 for never); nil
-- for text this library does not write. '' is normal operation: '', 0.
local function mode_parts(text)
  if text == '' then
    return '', 0
  end
  local name, untl = match(text, '^([%l_]+):(%d+)$')
  if not name or not KNOWN_MODES[name] then
    return nil
  end
  return name, tonumber(untl)
end

-- Reads and validates the CORE fields and the given groups of the state hash. A missing
-- hash reads as a fresh closed breaker; `new` is then set so that the first write
-- creates every field.
local function load_state(key, now, micros, groups)
  local names = names_of[groups] or field_names(groups)
  local values = pcall_redis('HMGET', key, unpack(names))
  if values.err then
    local actual = checked('TYPE', key).ok
    if actual ~= 'hash' and actual ~= 'none' then
      fail('ZV_WRONGTYPE', key .. ' is a ' .. actual .. ', expected a hash')
    end
    refused(values, 'HMGET', key)
  end
  if not values[1] then
    if checked('EXISTS', key) == 1 then
      fail('ZV_CORRUPT', key .. ' is a hash without zenvark fields')
    end
    return fresh_state(now, micros)
  end
  -- `new` stays unset (nil reads as false): the eight fields zv1_record reads then fill a
  -- table of eight slots, where a ninth key would double it.
  local st = take_fields(key, {}, names, values)
  if not KNOWN_STATES[st.state] then
    corrupt(key, 'state', st.state)
  end
  if not find(st.epoch, '^%d+$') then
    corrupt(key, 'epoch', st.epoch)
  end
  if st.mode ~= '' and not mode_parts(st.mode) then
    corrupt(key, 'mode', st.mode)
  end
  return st
end

-- Adds a group's fields to a state loaded without them (a new hash has them already).
local function load_group(key, st, group)
  if not st.new then
    take_fields(key, st, group, checked('HMGET', key, unpack(group)))
  end
end

-- HSET's field/value list, in a table kept between calls: not made and grown anew by
-- each write.
local hset_args = {}

-- Writes the named fields, or all of them when the hash is new.
local function save_state(key, st, names)
  if st.new then
    names = ALL_FIELDS
    st.new = false
  end
  local n = #names
  for i = 1, n do
    hset_args[2 * i - 1] = names[i]
    hset_args[2 * i] = st[names[i]]
  end
  checked('HSET', key, unpack(hset_args, 1, 2 * n))
end

-- A state that has not been written yet has no epoch to show.
local function visible_epoch(st)
  if st.new then
    return ''
  end
  return st.epoch
end

local function lease_valid(st, now)
  return st.lh ~= '' and st.lu > now
end

local function lease_remaining(st, now)
  if lease_valid(st, now) then
    return st.lu - now
  end
  return 0
end

-- The instance that holds a valid lease, or ''.
local function lease_holder(st, now)
  if lease_valid(st, now) then
    return st.lh
  end
  return ''
end

-- The last grant went to `actor` with `token` and was not released since; the lease may
-- have lapsed. Enough to give it up: nobody else was granted it.
local function granted_to(st, actor, token)
  return not st.new and st.lh == actor and st.lt == token
end

-- `actor` holds the lease with `token`, and it has not lapsed: enough to act on it.
local function holds_lease(st, now, actor, token)
  return granted_to(st, actor, token) and lease_valid(st, now)
end

-- Gives `actor` the lease for `ttl` ms from now. The caller made sure no other instance
-- holds a valid one. A new grant takes a new fencing token, max(last token + 1, now) with
-- now in ms: tokens grow with every grant, and a token is at least the time of its grant,
-- so a replica promoted after missing the last grants, or a server restarted empty, still
-- grants tokens above those it lost (unless its clock is behind the old one's by more than
-- the time from the lost grant to the new one). A holder asking again keeps its token.
local function grant(st, actor, now, ttl)
  if not lease_valid(st, now) then
    st.lt = max(st.lt + 1, now)
    st.lh = actor
  end
  st.lu = now + ttl
end

-- Everything a client needs to act on a breaker, as name/value pairs.
local function snapshot(st, now)
  local idle = -1
  if st.last >= 0 then
    idle = max(0, now - st.last)
  end
  local mode_name, untl = mode_parts(st.mode)
  local mode_since, left = 0, 0
  if mode_name ~= '' then
    mode_since = max(0, now - st.mt)
  end
  if untl > 0 then
    left = max(0, untl - now)
  end
  return {
    'state', st.state,
    'gen', st.gen,
    'epoch', visible_epoch(st),
    'age_ms', max(0, now - st.since),
    'holder', lease_holder(st, now),
    'token', st.lt,
    'lease_ms', lease_remaining(st, now),
    'recovery_failures', st.hcf,
    'recovery_successes', st.hcs,
    'recovery_age_ms', max(0, now - st.hca),
    'trial_successes', st.ts,
    'idle_ms', idle,
    'revision', REVISION,
    'mode', mode_name,
    'mode_actor', st.ma,
    'mode_note', st.mn,
    'mode_since_ms', mode_since,
    'mode_until', untl,
    'mode_left_ms', left,
    'time', now,
  }
end

---------------------------------------------------------------------------------------
-- Transitions: the only place that changes `state`
---------------------------------------------------------------------------------------

local function check_key_type(key, expected)
  local actual = checked('TYPE', key).ok
  if actual ~= expected and actual ~= 'none' then
    fail('ZV_WRONGTYPE', key .. ' is a ' .. actual .. ', expected a ' .. expected)
  end
end

-- A transition writes the state hash, appends to the events stream and publishes: the
-- stream must be ours and the user allowed all three before anything is written.
local function check_transition_keys(h)
  check_key_type(h.events_key, 'stream')
  check_rights({ 'HSET', h.state_key, 'XADD', h.events_key, 'PUBLISH', h.channel })
end

-- Moves the breaker to `to`, appends one audit entry and publishes it. The caller has
-- validated everything and called check_transition_keys(h) before its first write.
-- `facts` holds the numbers behind the decision; `token` is the actor's lease token or '';
-- `also` names fields the caller changed on the way (written with the transition's own).
-- `facts` may also hold, for the entry: note (an operator's reason), until_ms (when the
-- mode ends or ended), rule (the rule a would_open or a mode's end found reached, or the
-- instance rule a trip met), instances and reporters (the failing and the reporting
-- instances an instance rule counted; '' in every other entry); and
-- keep_window, which leaves the window as it is (a control's transitions: the window
-- decides what follows the mode).
-- Writes these fields, whichever groups the caller loaded (on a new hash, every field):
--   CORE      state, gen + 1, since (not epoch: the same hash lives on); mode as the caller
--             set it (written when `also` names it)
--   WINDOW    run and w emptied unless keep_window (not cfg, the spec; not last, the last call)
--   RECOVERY  hcf: 0 on leaving or entering CLOSED, one more from HALF_OPEN to OPEN, kept
--             from OPEN to HALF_OPEN; hca now; hcs 0
--   TRIALS    tp emptied, ts 0 (not pn: permit numbers only grow)
-- and nothing of LEASE. Returns the published JSON text.
local function transition(h, st, now, to, reason, facts, token, also)
  local from = st.state
  local gen = st.gen + 1
  local untl = facts.until_ms or 0
  local entry = {
    from = from, to = to, reason = reason, gen = format_number(gen),
    failures = facts.failures or '', calls = facts.calls or '', slow = facts.slow or '', rate = facts.rate or '',
    threshold = facts.threshold or '', window = facts.window or '',
    actor = h.actor, token = token, time = format_number(now),
    mode = mode_parts(st.mode), note = facts.note or '', ['until'] = untl > 0 and format_number(untl) or '',
    rule = facts.rule or '', instances = facts.instances or '', reporters = facts.reporters or '',
  }
  -- The entry first: a stream that refuses it (one whose last id is the largest there is)
  -- leaves nothing written.
  local fields = {
    'from', entry.from, 'to', entry.to, 'reason', entry.reason, 'gen', entry.gen,
    'failures', entry.failures, 'calls', entry.calls, 'slow', entry.slow, 'rate', entry.rate,
    'threshold', entry.threshold, 'window', entry.window,
    'actor', entry.actor, 'token', entry.token, 'time', entry.time,
    'mode', entry.mode, 'note', entry.note, 'until', entry['until'], 'rule', entry.rule,
    'instances', entry.instances, 'reporters', entry.reporters,
  }
  local id
  if h.retention > 0 then
    id = pcall_redis('XADD', h.events_key, 'MAXLEN', '~', h.retention, '*', unpack(fields))
  else
    id = pcall_redis('XADD', h.events_key, '*', unpack(fields))
  end
  if type(id) == 'table' and id.err then
    refused(id, 'XADD', h.events_key)
  end

  st.state = to
  st.gen = gen
  st.since = now
  local written = { 'state', 'gen', 'since', 'hcf', 'hca', 'hcs', 'tp', 'ts' }
  if not facts.keep_window then
    st.run = 0
    st.w = ''
    append_all(written, { 'run', 'w' })
  end
  -- Recovery progress spans an open period and its half-open trials: a failed trial
  -- reopens with the next backoff delay; closing starts over.
  if to == CLOSED or from == CLOSED then
    st.hcf = 0
  elseif from == HALF_OPEN and to == OPEN then
    st.hcf = (st.hcf or 0) + 1
  end
  st.hca = now
  st.hcs = 0
  st.tp = ''
  st.ts = 0
  save_state(h.state_key, st, append_all(written, also or {}))

  -- Published with the entry, not audited: what a client needs to go on; and, where the
  -- caller read the lease, who holds it (holder '' for none), so that the others need not ask.
  entry.kind = 'transition'
  entry.key = h.state_key
  entry.epoch = st.epoch
  entry.id = id
  entry.hcf = format_number(st.hcf or 0)
  if st.lh ~= nil then
    entry.holder = lease_holder(st, now)
    entry.lease_ms = format_number(lease_remaining(st, now))
  end
  local message = encode_json(entry)
  call('PUBLISH', h.channel, message)
  return message
end

---------------------------------------------------------------------------------------
-- Strategies
---------------------------------------------------------------------------------------

local STRATEGY_KINDS = { consecutive = true, count = true, time = true }

-- The strategy spec, one argument 'kind:threshold:window:minimum[:slow]':
--   consecutive:<failures in a row>:0:0
--   count:<failure rate in (0, 1]>:<calls, 1..MAX_COUNT_WINDOW>:<minimum calls, 1..window>[:<slow-call rate>]
--   time:<failure rate in (0, 1]>:<duration ms, MIN_DURATION_MS..MAX_DURATION_MS>:<minimum calls>[:<slow-call rate>]
-- With a slow-call rate in (0, 1], the share of slow calls in the window opens the circuit
-- too. The spec is stored (cfg) with the window; a spec of another shape (kind and
-- window) resets the window.
local function parse_strategy(raw)
  local kind, threshold, window, minimum, slow = match(raw, '^(%a+):([^:]+):([^:]+):([^:]+):?([^:]*)$')
  if not kind then
    fail('ZV_BADARG', "strategy must be 'kind:threshold:window:minimum[:slow]', got " .. show(raw))
  end
  local parts = { kind, threshold, window, minimum, slow }
  local s = { spec = raw, kind = enum_arg(parts, 1, 'strategy', STRATEGY_KINDS) }
  if slow ~= '' then
    if s.kind == 'consecutive' then
      fail('ZV_BADARG', 'a slow-call rate needs a count or time window, got ' .. show(raw))
    end
    s.slow = rate_arg(parts, 5, 'slow-call rate')
  end
  if s.kind == 'consecutive' then
    s.threshold = int_arg(parts, 2, 'threshold', 1, MAX_COUNT)
    s.window = int_arg(parts, 3, 'window', 0, 0)
    s.min_calls = int_arg(parts, 4, 'minimum calls', 0, 0)
    s.shape = 'consecutive'
    return s
  end
  s.threshold = rate_arg(parts, 2, 'threshold')
  if s.kind == 'count' then
    s.window = int_arg(parts, 3, 'window', 1, MAX_COUNT_WINDOW)
    s.min_calls = int_arg(parts, 4, 'minimum calls', 1, s.window)
  else
    s.window = int_arg(parts, 3, 'window', MIN_DURATION_MS, MAX_DURATION_MS)
    s.min_calls = int_arg(parts, 4, 'minimum calls', 1, MAX_COUNT)
  end
  s.shape = s.kind .. ':' .. s.window
  return s
end

-- An argument parsed once per text by `parse`, a pure function of it: a library keeps its
-- upvalues between calls. Each memory holds 64 texts at most.
local function remembered(parse, name)
  local memory, count = {}, 0
  return function(args, i)
    local raw = args[i] or required_arg(args, i, name)
    local parsed = memory[raw]
    if parsed then
      return parsed
    end
    parsed = parse(raw)
    if count >= 64 then
      memory, count = {}, 0
    end
    memory[raw] = parsed
    count = count + 1
    return parsed
  end
end

-- ARGV[i], the strategy spec (see parse_strategy).
local strategy_arg = remembered(parse_strategy, 'strategy')

-- The strategy stored with the window (cfg), as zv1_record took it; nil before the first
-- recorded call. Text that zv1_record would have refused is not the library's.
local function stored_strategy(key, cfg)
  if cfg == '' then
    return nil
  end
  local ok, s = pcall(strategy_arg, { cfg }, 1)
  if not ok then
    corrupt(key, 'cfg', cfg)
  end
  return s
end

-- The window shape of a stored spec: everything but the threshold and minimum.
local function shape_of(spec)
  local kind, window = match(spec, '^(%a+):[^:]+:([^:]+):')
  if kind == 'consecutive' then
    return kind
  end
  if kind then
    return kind .. ':' .. window
  end
  return ''
end

-- The summary of the call being made, in a table kept between calls like call_header.
local call_summary = {}

-- ARGV[i..i+6]: fast successes, fast failures, slow successes, slow failures, and the
-- runs of failures at the head, longest anywhere, and at the tail of the batch.
local function summary_arg(args, i)
  local fast_ok = int_arg(args, i, 'successes', 0, MAX_COUNT)
  local fast_fail = int_arg(args, i + 1, 'failures', 0, MAX_COUNT)
  local slow_ok = int_arg(args, i + 2, 'slow successes', 0, MAX_COUNT)
  local slow_fail = int_arg(args, i + 3, 'slow failures', 0, MAX_COUNT)
  local head = int_arg(args, i + 4, 'head run', 0, MAX_COUNT)
  local max_run = int_arg(args, i + 5, 'longest run', 0, MAX_COUNT)
  local tail = int_arg(args, i + 6, 'tail run', 0, MAX_COUNT)
  local successes = fast_ok + slow_ok
  local failures = fast_fail + slow_fail
  if successes + failures == 0 then
    fail('ZV_BADARG', 'the summary holds no outcome')
  end
  if max_run > failures or head > max_run or tail > max_run then
    fail('ZV_BADARG', 'runs must satisfy head, tail <= longest <= failures, got head ' .. head
      .. ', longest ' .. max_run .. ', tail ' .. tail .. ', failures ' .. failures)
  end
  if successes == 0 and (head ~= failures or tail ~= failures) then
    fail('ZV_BADARG', 'without successes every run must equal failures')
  end
  if successes > 0 and head + tail > failures then
    fail('ZV_BADARG', 'head and tail runs overlap: head ' .. head .. ' + tail ' .. tail
      .. ' > failures ' .. failures)
  end
  if failures > 0 and max_run == 0 then
    fail('ZV_BADARG', 'longest run must be at least 1 when there are failures')
  end
  local sum = call_summary
  sum.ok, sum.fail, sum.slow_ok, sum.slow_fail = fast_ok, fast_fail, slow_ok, slow_fail
  sum.head, sum.max_run, sum.tail = head, max_run, tail
  sum.successes, sum.failures, sum.calls = successes, failures, successes + failures
  return sum
end

local function rate_reached(failures, calls, threshold)
  return failures / calls >= threshold - RATE_EPSILON
end

-- Whether the figures of a window reach the failure rule (the run, or the failure rate)
-- and the slow-call rule; a rate counts once the window holds the minimum calls.
local function rules_reached(s, failures, calls, slow)
  if s.kind == 'consecutive' then
    return failures >= s.threshold, false
  end
  if calls < s.min_calls then
    return false, false
  end
  return rate_reached(failures, calls, s.threshold), s.slow ~= nil and rate_reached(slow, calls, s.slow)
end

-- Each strategy folds a summary into its window and returns what the window now holds:
-- (failures, calls, slow calls, window text to store in the w field). For consecutive
-- failures, failures and calls are the longest run the summary made.

local function fold_consecutive(st, sum)
  local peak
  if sum.successes == 0 then
    st.run = st.run + sum.failures
    peak = st.run
  else
    peak = max(st.run + sum.head, sum.max_run)
    st.run = sum.tail
  end
  return peak, peak, 0, ''
end

-- A count window is the last `window` outcomes as one code each, oldest first. A summary
-- does not say how its outcomes interleaved; successes are laid down before failures,
-- so that the failure run at the tail stays last.

-- The failures ('1', '3') and slow calls ('2', '3') among the codes of a count window, and
-- how many of its bytes are no code. Each gsub drops every run of one code, the commonest
-- first: a run costs one match, where a class matched at every byte ('[13]') costs a match
-- per code, about 3 µs for a window of 100. A healthy window takes one pass, and most
-- windows, which hold no slow call, two.
local function count_codes(text)
  local unusual = gsub(text, '0+', '')     -- '1', '2', '3' (and foreign bytes)
  if unusual == '' then
    return 0, 0, 0
  end
  local slow = gsub(unusual, '1+', '')     -- '2', '3' (and foreign bytes)
  if slow == '' then
    return #unusual, 0, 0
  end
  local slow_failed = gsub(slow, '2+', '') -- '3' (and foreign bytes)
  local foreign = gsub(slow_failed, '3+', '')
  return #unusual - #slow + #slow_failed - #foreign, #slow - #foreign, #foreign
end

-- The failures and slow calls of a stored count window, which holds codes only, at most
-- `window` of them.
local function count_window(key, w, s)
  if #w > s.window then
    corrupt(key, 'w', w)
  end
  local failures, slow, foreign = count_codes(w)
  if foreign > 0 then
    corrupt(key, 'w', w)
  end
  return failures, slow
end

-- The stored window as a strategy of this shape reads it: a count window is codes, at
-- most `window` of them; a time window is whole buckets, at most TIME_BUCKETS.
local function check_window_text(key, w, s)
  if s.kind == 'count' then
    count_window(key, w, s)
  elseif s.kind == 'time' then
    local n = #w / BUCKET_BYTES
    if n ~= floor(n) or n > TIME_BUCKETS then
      corrupt(key, 'w', '<' .. #w .. ' bytes>')
    end
  end
end

-- n codes `code` in a row. string.rep adds one byte at a time; a cut of a long run, made
-- once per code, is a copy.
local code_runs = {}

local function codes(code, n)
  if n == 0 then
    return ''
  end
  local run = code_runs[code]
  if not run then
    run = rep(code, MAX_COUNT_WINDOW)
    code_runs[code] = run
  end
  return sub(run, 1, n)
end

-- The stored codes, then the summary's in the order they are laid down; the oldest fall
-- out. Counted without reading the new text again: what falls out of the stored codes is
-- counted out, and the summary's runs are counted as they are laid down.
local function fold_count(key, current, sum, s)
  local window = s.window
  local failures, slow = count_window(key, current, s)
  local slow_ok, ok, slow_fail, fast_fail = sum.slow_ok, sum.ok, sum.slow_fail, sum.fail
  if sum.calls > window then
    -- No more than a window of each run can stay.
    slow_ok, ok, slow_fail, fast_fail = min(slow_ok, window), min(ok, window), min(slow_fail, window), min(fast_fail, window)
  end
  local over = #current + slow_ok + ok + slow_fail + fast_fail - window
  if over > 0 and over < #current then
    local gone_failures, gone_slow = count_codes(sub(current, 1, over))
    current, failures, slow = sub(current, over + 1), failures - gone_failures, slow - gone_slow
  elseif over > 0 then
    -- All the stored codes fall out, and the oldest of the runs: the failures, at most a
    -- window, always fit.
    over = over - #current
    current, failures, slow = '', 0, 0
    local cut = min(over, slow_ok)
    slow_ok, over = slow_ok - cut, over - cut
    cut = min(over, ok)
    ok, slow_fail = ok - cut, slow_fail - (over - cut)
  end
  local text = current .. codes(SLOW_OK, slow_ok) .. codes(OK, ok) .. codes(SLOW_FAIL, slow_fail) .. codes(FAIL, fast_fail)
  return failures + slow_fail + fast_fail, #text, slow + slow_ok + slow_fail, text
end

-- The window is up to TIME_BUCKETS buckets, each four doubles packed with struct:
-- bucket number (server ms / bucket width), calls, failures, slow calls.

-- The struct format of k buckets, made once for each k.
local bucket_formats = {}

local function buckets_format(k)
  local f = bucket_formats[k]
  if not f then
    f = '<' .. rep('d', 4 * k)
    bucket_formats[k] = f
  end
  return f
end

-- The numbers of the buckets a fold keeps, in a table kept between calls.
local kept_buckets = {}

local function fold_time(key, current, sum, s, now)
  check_window_text(key, current, s)
  local n = #current / BUCKET_BYTES
  local now_bucket = floor(now / (s.window / TIME_BUCKETS))
  local kept, k = kept_buckets, 0
  local calls, failures, slow, found = 0, 0, 0, false
  for b = 0, n - 1 do
    local bucket, c, f, sl = unpack_struct('<dddd', current, 1 + b * BUCKET_BYTES)
    -- Buckets from the future (a clock set back) are dropped with the expired ones.
    if bucket > now_bucket - TIME_BUCKETS and bucket <= now_bucket then
      if bucket == now_bucket then
        c = c + sum.calls
        f = f + sum.failures
        sl = sl + sum.slow_ok + sum.slow_fail
        found = true
      end
      kept[k + 1], kept[k + 2], kept[k + 3], kept[k + 4] = bucket, c, f, sl
      k = k + 4
      calls = calls + c
      failures = failures + f
      slow = slow + sl
    end
  end
  if not found then
    kept[k + 1], kept[k + 2], kept[k + 3], kept[k + 4] = now_bucket, sum.calls, sum.failures, sum.slow_ok + sum.slow_fail
    k = k + 4
    calls = calls + sum.calls
    failures = failures + sum.failures
    slow = slow + sum.slow_ok + sum.slow_fail
  end
  return failures, calls, slow, pack_struct(buckets_format(k / 4), unpack(kept, 1, k))
end

-- Folds a summary into the window of strategy `s`: what the window then holds (see above).
local function fold(key, st, s, sum, now)
  if s.kind == 'consecutive' then
    return fold_consecutive(st, sum)
  elseif s.kind == 'count' then
    return fold_count(key, st.w, sum, s)
  end
  return fold_time(key, st.w, sum, s, now)
end

-- A summary of no outcomes: folded into a window, it reads what the window holds at `now`
-- (a time window without the buckets that expired) and adds nothing.
local NO_OUTCOMES = {
  ok = 0, fail = 0, slow_ok = 0, slow_fail = 0, head = 0, max_run = 0, tail = 0, successes = 0, failures = 0, calls = 0,
}

-- Which rule, if any, the window now trips: returns the reason and the facts for the
-- audit entry, or nil.
local function judge(s, failures, calls, slow)
  local failed, slowed = rules_reached(s, failures, calls, slow)
  if s.kind == 'consecutive' then
    if not failed then
      return nil
    end
    return 'consecutive_failures', {
      failures = format_number(failures), calls = format_number(calls),
      threshold = format_number(s.threshold), window = s.shape,
    }
  end
  local reason, rate, threshold
  if failed then
    reason, rate, threshold = 'failure_rate', failures / calls, s.threshold
  elseif slowed then
    reason, rate, threshold = 'slow_call_rate', slow / calls, s.slow
  else
    return nil
  end
  return reason, {
    failures = format_number(failures), calls = format_number(calls), slow = format_number(slow),
    rate = format('%.4f', rate), threshold = format_number(threshold), window = s.shape,
  }
end

---------------------------------------------------------------------------------------
-- Reporters: the instance rule
---------------------------------------------------------------------------------------

--[[ The instance rule (zv1_record's ARGV 14, 'K:share'): the fleet opens only when a rule
of the strategy is reached AND failures in the window came from at least K distinct
instances AND failing instances / instances that reported in the window >= share (K 0 or
share '0': that part is off; not both).

The reporters live in the instances hash (KEYS[3]), one field per instance (its actor),
value 'gen:last_pos:last_ms:fail_pos:fail_ms:iso_ms':
  gen        the fleet generation the entry was written under. Entries of another
             generation are ignored: every transition moves the generation on, so after a
             trip or a would_open (which empty the window) and after an operator's control
             (which may keep it) reporters are counted afresh.
  last_pos   rn (the state hash's position counter: outcomes folded by calls that gave an
             instance rule) after the instance's last report; last_ms its server time (ms)
  fail_pos   the same for its last report holding a failure; fail_ms its time (0:0: none)
  iso_ms     server ms at which it isolated itself (zv1_isolate); 0: not isolated. An
             isolated instance counts like any other, while its failures are in the window
             (when a second instance fails meanwhile, the failures do come from two; one
             that died isolated stops counting when they leave it); its rejoin clears
             fail_pos and fail_ms (its failures stay in the window, no longer naming it)
A summary lays successes first and failures last, as the count window does, so that a
report's failures end at its position.
In the window, for an entry of the current generation (failing: fail_pos/fail_ms;
reporting: last_pos/last_ms; a position or time of 0 is never in it):
  consecutive  pos > rn - run, the run the strategy judged
  count        pos > rn - L, L the outcomes the window holds after the fold
  time         bucket(ms) > bucket(now) - TIME_BUCKETS, bucket(ms) = floor(ms / (window / TIME_BUCKETS))
Outcomes recorded without an instance rule (a client of an earlier revision, or one not
configured with the rule) move no position: they count for the strategy, not as reporters.
Bound: at most MAX_INSTANCES entries. A call that adds an entry past it deletes the entries
of other generations, then those least recently active (max(last_ms, iso_ms); ties by
name), until MAX_INSTANCES are left: past the bound the rule counts among the
MAX_INSTANCES most recent reporters. A trip leaves the hash as it is: its entries are then
of another generation (counted no more), and an isolated instance's rejoin still finds its
iso_ms to write its entry (fleet_opened).
]]

local function parse_instance_rule(raw)
  local k_text, share_text = match(raw, '^([^:]+):([^:]+)$')
  if not k_text then
    fail('ZV_BADARG', "instance rule must be 'minimum instances:share', got " .. show(raw))
  end
  local parts = { k_text, share_text }
  local r = { k = int_arg(parts, 1, 'minimum instances', 0, MAX_INSTANCES), share = 0 }
  if share_text ~= '0' then
    r.share = rate_arg(parts, 2, 'instance share')
  end
  if r.k == 0 and r.share == 0 then
    fail('ZV_BADARG', 'the instance rule needs minimum instances or a share, got ' .. show(raw))
  end
  local names = {}
  if r.k > 0 then
    names[#names + 1] = 'minimum_instances:' .. format_number(r.k)
  end
  if r.share > 0 then
    names[#names + 1] = 'instance_share:' .. format_number(r.share)
  end
  r.name = concat(names, ',')
  return r
end

-- ARGV[i], the instance rule (see parse_instance_rule).
local instance_rule_arg = remembered(parse_instance_rule, 'instance rule')

-- A reporter entry's value as its parts; nil for text this library does not write.
local function reporter_parts(value)
  local g, lp, lm, fp, fm, im = match(value, '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+)$')
  if not g then
    return nil
  end
  return {
    gen = tonumber(g), last_pos = tonumber(lp), last_ms = tonumber(lm), fail_pos = tonumber(fp), fail_ms = tonumber(fm),
    iso_ms = tonumber(im),
  }
end

local function reporter_entry(key, field, value)
  local r = reporter_parts(value)
  if not r then
    corrupt(key, field, value)
  end
  return r
end

local function reporter_text(r)
  return format_number(r.gen) .. ':' .. format_number(r.last_pos) .. ':' .. format_number(r.last_ms) .. ':'
    .. format_number(r.fail_pos) .. ':' .. format_number(r.fail_ms) .. ':' .. format_number(r.iso_ms)
end

-- The actor's reporter entry (nil when none), the hash's type checked: read before any write.
local function read_reporter(key, actor)
  local value = pcall_redis('HGET', key, actor)
  if type(value) == 'table' and value.err then
    check_key_type(key, 'hash')
    refused(value, 'HGET', key)
  end
  if not value then
    return nil
  end
  return reporter_entry(key, actor, value)
end

-- What a call that changes the reporters may run on the instances hash.
local function reporter_rights(key)
  return { 'HSET', key, 'HLEN', key, 'HGETALL', key, 'HDEL', key }
end

-- Keeps at most MAX_INSTANCES entries, after a write that added `actor`'s (see above).
local function bound_reporters(key, gen)
  if checked('HLEN', key) <= MAX_INSTANCES then
    return
  end
  local all = checked('HGETALL', key)
  local gone, live = {}, {}
  for i = 1, #all, 2 do
    local r = reporter_parts(all[i + 1])
    if not r or r.gen ~= gen then
      gone[#gone + 1] = all[i]
    else
      live[#live + 1] = { all[i], max(r.last_ms, r.iso_ms) }
    end
  end
  sort(live, function(a, b)
    if a[2] ~= b[2] then
      return a[2] < b[2]
    end
    return a[1] < b[1]
  end)
  for i = 1, #live - MAX_INSTANCES do
    gone[#gone + 1] = live[i][1]
  end
  if #gone > 0 then
    checked('HDEL', key, unpack(gone))
  end
end

-- Writes the actor's entry; then keeps the bound if the entry is new.
local function write_reporter(key, actor, r)
  if checked('HSET', key, actor, reporter_text(r)) == 1 then
    bound_reporters(key, r.gen)
  end
end

-- The failing and the reporting instances in the window of strategy `s` after a fold (see
-- above): `span` is the run (consecutive) or the window's length (count); `own` stands for
-- the actor's stored entry. Every entry is checked.
local function count_reporters(key, actor, own, st, s, span, now)
  local all = checked('HGETALL', key)
  local failing, reporting = 0, 0
  local floor_pos, width, oldest = st.rn - span, 0, 0
  if s.kind == 'time' then
    width = s.window / TIME_BUCKETS
    oldest = floor(now / width) - TIME_BUCKETS
  end
  local function within(pos, ms)
    if width > 0 then
      return ms > 0 and floor(ms / width) > oldest
    end
    return pos > 0 and pos > floor_pos
  end
  local function add(r)
    if r.gen == st.gen then
      if within(r.fail_pos, r.fail_ms) then
        failing = failing + 1
      end
      if within(r.last_pos, r.last_ms) then
        reporting = reporting + 1
      end
    end
  end
  for i = 1, #all, 2 do
    if all[i] ~= actor then
      add(reporter_entry(key, all[i], all[i + 1]))
    end
  end
  add(own)
  return failing, reporting
end

local function instance_rule_met(r, failing, reporting)
  return (r.k == 0 or failing >= r.k) and (r.share == 0 or (reporting > 0 and rate_reached(failing, reporting, r.share)))
end

---------------------------------------------------------------------------------------
-- Modes: what follows a mode when it ends
---------------------------------------------------------------------------------------

-- The state the window decides at `now` (a time window without its expired buckets), and
-- the facts for the entry: OPEN when the window reaches a rule of the stored strategy
-- (`rule` names it), else CLOSED. Before the first recorded call there is no strategy:
-- CLOSED.
local function window_verdict(key, st, now)
  local s = stored_strategy(key, st.cfg)
  if not s then
    return CLOSED, {}
  end
  local failures, calls, slow = fold(key, st, s, NO_OUTCOMES, now)
  local reason, facts = judge(s, failures, calls, slow)
  if reason then
    facts.rule = reason
    return OPEN, facts
  end
  return CLOSED, { failures = format_number(failures), calls = format_number(calls), slow = format_number(slow), window = s.shape }
end

local function set_mode(st, name, untl, actor, note, now)
  if name == '' then
    st.mode, st.ma, st.mn, st.mt = '', '', '', 0
  else
    st.mode, st.ma, st.mn, st.mt = name .. ':' .. format_number(untl), actor, note, now
  end
end

-- Ends the mode (`reason` 'released' or 'expired'): the window decides the state, which
-- opens as a trip would (the window emptied) or closes with the window kept. Loads what
-- the transition needs; the caller checked the transition's keys. Returns its JSON.
local function end_mode(h, st, now, reason, note, untl)
  load_group(h.state_key, st, WINDOW)
  load_group(h.state_key, st, RECOVERY)
  local to, facts = window_verdict(h.state_key, st, now)
  facts.note = note
  facts.until_ms = untl
  facts.keep_window = to == CLOSED
  set_mode(st, '', 0)
  return transition(h, st, now, to, reason, facts, '', MODE_FIELDS)
end

-- The time part of the last stream id there is, and the sequence parts after which a
-- stream takes one entry at most (XADD cannot add after <LAST_ID_MS>-18446744073709551615).
local LAST_ID_MS = '18446744073709551615'
local LAST_SEQS = { ['18446744073709551614'] = true, ['18446744073709551615'] = true }

-- A call that ends an expired mode first may write a transition of its own after it: two
-- entries. A stream whose newest entry (added by another client) leaves room for one
-- would take the first and refuse the second, half way: refused before the first instead
-- (every call that would end the mode, whether or not it would write a second entry).
local function check_room_for_two(events_key)
  local newest = checked('XREVRANGE', events_key, '+', '-', 'COUNT', 1)[1]
  local ms, seq = match(newest and newest[1] or '', '^(%d+)%-(%d+)$')
  if ms == LAST_ID_MS and LAST_SEQS[seq] then
    fail('ZV_REFUSED', 'XADD on ' .. events_key .. ' would be refused: the stream has room for one more entry at most, '
      .. 'and a call that ends an expired mode may write two (its last id, ' .. newest[1] .. ', was not written by zenvark)')
  end
end

-- The first writing call after a mode's expiry writes its end (reason 'expired', with the
-- time it ended): returns the entry's JSON, or nil when no mode has expired.
local function settle_expired(h, st, now)
  local name, untl = mode_parts(st.mode)
  if name == '' or untl == 0 or now < untl then
    return nil
  end
  check_transition_keys(h)
  check_room_for_two(h.events_key)
  return end_mode(h, st, now, 'expired', '', untl)
end

---------------------------------------------------------------------------------------
-- Registered functions
---------------------------------------------------------------------------------------

-- Turns our raised errors into clean error replies; anything else propagates as is.
local function guard(fn)
  return function(keys, args)
    if not floor then
      bind_globals()
    end
    -- value: the reply, or what was raised.
    local ok, value = pcall(fn, keys, args)
    if ok then
      return value
    end
    if type(value) == 'table' and value.zv then
      return error_reply(value.zv)
    end
    error(value)
  end
end

--[[ zv1_revision: the revision of this library.
KEYS: none.  ARGV: none.
Returns: integer revision.
Errors: ZV_BADARG (keys or arguments given). ]]
local function revision(keys, args)
  if #keys > 0 or #args > 0 then
    fail('ZV_BADARG', 'expected no keys and no arguments, got ' .. #keys .. ' keys and ' .. #args .. ' arguments')
  end
  return REVISION
end

--[[ zv1_state: read a breaker without changing it.
KEYS: state, events.  ARGV: none.
Returns: name/value pairs, in this order: state, gen, epoch ('' before the first write),
age_ms (time in this state), holder ('' when no valid lease), token (last granted),
lease_ms (left on the lease), recovery_failures (failed recovery checks, or half-open
periods, since the circuit opened), recovery_successes (recovery checks passed in a row),
recovery_age_ms (since the last recovery check, or the transition), trial_successes
(successful trial calls in this half-open period), idle_ms (since the last recorded
call, -1 if none), revision, mode (the mode an operator set, as stored: empty for normal
operation, else forced_open, forced_closed or monitor; still shown once its expiry has
passed, until a writing call ends it), mode_actor, mode_note (who set it, and why; empty
when none), mode_since_ms (since it was set, 0 when none), mode_until (when it ends, server
ms, 0 for never), mode_left_ms (left until then, 0 when none: 0 with mode_until above 0
means it is over, its entry not written yet), time (server time, ms).
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT, ZV_NOPERM, ZV_REFUSED. ]]
local function read_state(keys, args)
  check_counts(keys, args, 0)
  local now, micros = server_time()
  return snapshot(load_state(keys[1], now, micros, ALL_GROUPS), now)
end

--[[ zv1_record: fold a summary of call outcomes into the window; maybe trip (on the
failure run, the failure rate, or the slow-call rate).
KEYS: state, events; and instances (a hash, see "Reporters") exactly when ARGV 14 is given.
ARGV: header (channel, actor, retention), generation the outcomes were observed under,
  summary (7 values, see summary_arg), strategy spec (one value, see strategy_arg), lease
  ttl ms (optional, 0..MAX_TTL_MS; 0 or absent: no lease wanted): when above 0 and the call
  trips the breaker while no instance holds a valid lease, the actor is granted it with the
  trip (see grant()): the instance that saw the failures runs the recovery checks, and
  nobody else has to ask; instance rule (optional, revision 7: 'K:share', K an integer
  0..MAX_INSTANCES, share '0' or a rate in (0, 1], not both 0; e.g. '2:0', '0:0.5',
  '2:0.5'; ARGV 13 must then be given, '0' for no lease).
Without ARGV 14 nothing of the instance rule is read or written. With it, the call adds its
outcomes to rn and writes the actor's reporter entry (every counted call but a trip or a
would_open); when a rule of the strategy is reached, the reporters in the window are
counted (this report included) and the circuit opens only if the instance rule is met.
Returns: {status, state, gen, epoch ('' before the first write), transition JSON or '',
then for 'opened' the token of the lease the actor holds after the trip (0: another
instance holds it, or no ttl was given), then with ARGV 14, for 'opened' and 'held',
failing instances and reporting instances in the window}; status is
  'ok'          counted, no transition
  'reshaped'    counted into a window reset because the stored one had another shape; no
                transition
  'opened'      counted (into a reset window or not), and the circuit opened; the
                published entry says who holds the lease; with the instance rule the entry
                has `instances` (failing), `reporters` and `rule` (the instance rule met:
                'minimum_instances:K', 'instance_share:S' or both, comma-separated)
  'held'        (ARGV 14 only) counted; a rule of the strategy was reached but the instance
                rule was not met: no transition, no entry; {'held', state, gen, epoch, '',
                0, failing, reporting}
  'stale_gen'   observed under another generation: not counted (also after a mode whose
                expiry had passed was ended first: see zv1_control)
  'not_closed'  the breaker is not closed: not counted
Under a mode (zv1_control): forced closed counts and never trips (the instance rule is not
evaluated); monitor, when a rule is reached (and the instance rule, if given, met), writes
and publishes a would_open transition (closed to closed, the rule in `rule`, followed by the
instance rule's name after a comma, `instances` and `reporters` with the rule, the window
emptied, no lease granted) and answers 'ok' with its JSON and new generation; an instance
rule not met answers 'held'.
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT (also a reporter entry this library did not
write, found when the reporters are counted: an expired mode's end may have been written
before), ZV_NOPERM, ZV_REFUSED. ]]
local function record(keys, args)
  local rule_given = args[14]
  local h = header(keys, args, 14, nil, rule_given and 3 or 2)
  local gen = int_arg(args, 4, 'generation', 0, SAFE_INTEGER)
  local sum = summary_arg(args, 5)
  local s = strategy_arg(args, 12)
  local ttl = opt_int_arg(args, 13, 'lease ttl', 0, MAX_TTL_MS, nil)
  if ttl == 0 then
    ttl = nil
  end
  local rule, own, instances_key
  if rule_given then
    rule = instance_rule_arg(args, 14)
    -- Every instance that reported in a run of failures failed in it: a share would always be 1.
    if rule.share > 0 and s.kind == 'consecutive' then
      fail('ZV_BADARG', 'a share of instances needs a count or time window, got strategy ' .. show(s.spec)
        .. ' and instance rule ' .. show(args[14]))
    end
  end
  local now, micros = server_time()
  local st
  if rule then
    st = load_state(h.state_key, now, micros, RULE_RECORD_GROUPS)
    instances_key = keys[3]
    own = read_reporter(instances_key, h.actor)
    check_rights(reporter_rights(instances_key))
  else
    st = load_state(h.state_key, now, micros, RECORD_GROUPS)
  end
  if st.mode ~= '' then
    settle_expired(h, st, now)
  end

  if gen ~= st.gen then
    return { 'stale_gen', st.state, st.gen, visible_epoch(st), '' }
  end
  if st.state ~= CLOSED then
    return { 'not_closed', st.state, st.gen, visible_epoch(st), '' }
  end

  local status = 'ok'
  local changed = {}
  if st.cfg ~= s.spec then
    if shape_of(st.cfg) ~= s.shape then
      if st.cfg ~= '' then
        status = 'reshaped'
      end
      st.run = 0
      st.w = ''
    end
    st.cfg = s.spec
    changed[#changed + 1] = 'cfg'
  end
  local run, window = st.run, st.w

  local failures, calls, slow, text = fold(h.state_key, st, s, sum, now)
  -- The time of the last call serves idle probes; to the nearest LAST_CALL_STEP_MS is enough.
  if now - st.last >= LAST_CALL_STEP_MS then
    st.last = now
    changed[#changed + 1] = 'last'
  end

  local reason, facts = judge(s, failures, calls, slow)
  local mine, failing, reporting
  if rule then
    -- This report's positions: its failures are its last outcomes (see "Reporters").
    st.rn = st.rn + sum.calls
    changed[#changed + 1] = 'rn'
    local kept = own and own.gen == st.gen and own or nil
    mine = {
      gen = st.gen, last_pos = st.rn, last_ms = now, fail_pos = kept and kept.fail_pos or 0, fail_ms = kept and kept.fail_ms or 0,
      iso_ms = kept and kept.iso_ms or 0,
    }
    if sum.failures > 0 then
      mine.fail_pos, mine.fail_ms = st.rn, now
    end
    if reason and mode_parts(st.mode) ~= FORCED_CLOSED then
      failing, reporting = count_reporters(instances_key, h.actor, mine, st, s, s.kind == 'count' and calls or failures, now)
      if instance_rule_met(rule, failing, reporting) then
        facts.instances, facts.reporters = format_number(failing), format_number(reporting)
      else
        reason = nil
        status = 'held'
      end
    end
  end
  if reason and st.mode ~= '' then
    if mode_parts(st.mode) == MONITOR then
      -- What a trip would have been, audited and published; the circuit stays closed and
      -- the window starts over, as after a trip.
      check_transition_keys(h)
      facts.rule = rule and reason .. ',' .. rule.name or reason
      local message = transition(h, st, now, CLOSED, 'would_open', facts, '', changed)
      return { 'ok', st.state, st.gen, st.epoch, message }
    end
    reason = nil -- forced closed: counted, never tripped
  end
  if reason then
    check_transition_keys(h)
    load_group(h.state_key, st, LEASE)
    local token = 0
    if ttl and not lease_valid(st, now) then
      grant(st, h.actor, now, ttl)
      append_all(changed, LEASE)
    end
    if st.lh == h.actor and lease_valid(st, now) then
      token = st.lt
    end
    if rule then
      facts.rule = rule.name
    end
    local message = transition(h, st, now, OPEN, reason, facts, '', changed)
    if rule then
      return { 'opened', st.state, st.gen, st.epoch, message, token, failing, reporting }
    end
    return { 'opened', st.state, st.gen, st.epoch, message, token }
  end

  st.w = text
  if st.run ~= run then
    changed[#changed + 1] = 'run'
  end
  if st.w ~= window then
    changed[#changed + 1] = 'w'
  end
  if #changed > 0 or st.new then
    save_state(h.state_key, st, changed)
  end
  if rule then
    write_reporter(instances_key, h.actor, mine)
    if status == 'held' then
      return { 'held', st.state, st.gen, st.epoch, '', 0, failing, reporting }
    end
  end
  return { status, st.state, st.gen, st.epoch, '' }
end

--[[ zv1_acquire: take the breaker's lease, or learn who holds it.
KEYS: state, events.
ARGV: header (channel, actor, retention), ttl ms.
A free or expired lease is granted with a new fencing token, max(last token + 1, now) with
now in ms (see grant()). The current holder asking again keeps its token and gets a fresh
ttl. A mode whose expiry has passed is ended first (see zv1_control).
Returns: {status, token, holder, lease_ms, then the name/value pairs of zv1_state}; status is
  'granted'  the actor (holder) holds the lease with `token` for lease_ms
  'held'     another instance (holder) holds it, with `token`, for lease_ms more
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT, ZV_NOPERM, ZV_REFUSED. ]]
local function acquire(keys, args)
  local h = header(keys, args, 4)
  local ttl = int_arg(args, 4, 'ttl', 1, MAX_TTL_MS)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros, ALL_GROUPS)
  if st.mode ~= '' then
    settle_expired(h, st, now)
  end

  if lease_valid(st, now) and st.lh ~= h.actor then
    return append_all({ 'held', st.lt, st.lh, st.lu - now }, snapshot(st, now))
  end
  grant(st, h.actor, now, ttl)
  save_state(h.state_key, st, { 'lh', 'lt', 'lu' })
  return append_all({ 'granted', st.lt, st.lh, ttl }, snapshot(st, now))
end

--[[ zv1_renew: extend a lease the actor holds.
KEYS: state, events.
ARGV: header (channel, actor, retention), token, ttl ms.
A mode whose expiry has passed is ended first (see zv1_control).
Returns: {status, token, holder, lease_ms}; status is
  'renewed'  extended to ttl from now
  'lost'     not held by this actor with this token any more (expired, released or taken);
             token, holder and lease_ms describe the current lease
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT, ZV_NOPERM, ZV_REFUSED. ]]
local function renew(keys, args)
  local h = header(keys, args, 5)
  local token = int_arg(args, 4, 'token', 1, SAFE_INTEGER)
  local ttl = int_arg(args, 5, 'ttl', 1, MAX_TTL_MS)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros, LEASE_GROUPS)
  if st.mode ~= '' then
    settle_expired(h, st, now)
  end

  if not holds_lease(st, now, h.actor, token) then
    return { 'lost', st.lt, lease_holder(st, now), lease_remaining(st, now) }
  end
  st.lu = now + ttl
  save_state(h.state_key, st, { 'lu' })
  return { 'renewed', st.lt, st.lh, ttl }
end

--[[ zv1_release: give a lease up, and tell the other instances at once.
KEYS: state, events.
ARGV: header (channel, actor, retention), token.
The lease is released if it was last granted to the actor with this token, even if it has
lapsed since (nobody else was granted it); the release is published on the channel
({kind = 'released', key, token}).
Returns: {status}; 'released', or 'not_holder' when the lease was granted to another
instance or token, or released already (nothing changes).
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT, ZV_NOPERM, ZV_REFUSED. ]]
local function release(keys, args)
  local h = header(keys, args, 4)
  local token = int_arg(args, 4, 'token', 1, SAFE_INTEGER)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros, LEASE_GROUPS)

  if not granted_to(st, h.actor, token) then
    return { 'not_holder' }
  end
  check_rights({ 'HSET', h.state_key, 'PUBLISH', h.channel })
  st.lh = ''
  st.lu = 0
  save_state(h.state_key, st, { 'lh', 'lu' })
  call('PUBLISH', h.channel, encode_json({ kind = 'released', key = h.state_key, token = tostring(token) }))
  return { 'released' }
end

local CHECK_TYPES = { recovery = true, idle = true, wait = true }
local CHECK_RESULTS = { success = true, failure = true }
local TRIAL_RESULTS = { success = true, failure = true, ignored = true }

-- Where recovery leads: CLOSED, or HALF_OPEN when trial calls are configured.
local function recovered_state(permits)
  if permits > 0 then
    return HALF_OPEN
  end
  return CLOSED
end

--[[ zv1_health: a health-check result from the lease holder.
KEYS: state, events.
ARGV: header (channel, actor, retention), token, generation, type, result, success
  threshold (recovery checks in a row that close, 1..MAX_HEALTH_SUCCESS_THRESHOLD;
  default 1), trial permits (0, or the permits of a half-open state to go to instead of
  closing; default 0). The two defaults keep revision-1 clients, which send neither,
  working.
  type 'recovery': a recovery check while open. Successes in a row up to the threshold
    recover the circuit (to CLOSED, or HALF_OPEN with trial permits); a failure is
    counted and restarts the run.
  type 'idle': an idle probe; a failure opens a closed circuit.
  type 'wait': no check is configured and the open wait elapsed: with trial permits,
    the circuit goes HALF_OPEN (result must be 'success').
Reports whose token is not the current, valid lease of the actor change nothing. While a
mode is set (zv1_control) every report is 'ignored': the operator decides. A mode whose
expiry has passed is ended first (its 'expired' entry), as by every writing call that
reads the mode.
Returns: {status, state, gen, epoch ('' before the first write), recovery_failures (after
the report), transition JSON or ''}; status is
  'closed' | 'half_open' | 'opened'  the report caused that transition
  'counted'            a recovery check was counted
  'ignored'            nothing to do for this type in this state
  'stale_token'        the actor does not hold the lease with this token
  'stale_gen'          the breaker has moved to another generation
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT, ZV_NOPERM, ZV_REFUSED. ]]
local function health(keys, args)
  local h = header(keys, args, 9)
  local token = int_arg(args, 4, 'token', 1, SAFE_INTEGER)
  local gen = int_arg(args, 5, 'generation', 0, SAFE_INTEGER)
  local check_type = enum_arg(args, 6, 'type', CHECK_TYPES)
  local result = enum_arg(args, 7, 'result', CHECK_RESULTS)
  local needed = opt_int_arg(args, 8, 'success threshold', 1, MAX_HEALTH_SUCCESS_THRESHOLD, 1)
  local permits = opt_int_arg(args, 9, 'trial permits', 0, MAX_TRIAL_PERMITS, 0)
  if check_type == 'wait' and (permits == 0 or result ~= 'success') then
    fail('ZV_BADARG', "type 'wait' needs trial permits and result 'success'")
  end
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros, HEALTH_GROUPS)

  local function reply(status, message)
    return { status, st.state, st.gen, visible_epoch(st), st.hcf, message or '' }
  end
  if st.mode ~= '' then
    settle_expired(h, st, now)
  end
  if not holds_lease(st, now, h.actor, token) then
    return reply('stale_token')
  end
  if gen ~= st.gen then
    return reply('stale_gen')
  end
  -- A forced or monitored breaker is the operator's until the mode ends: no check moves it.
  if st.mode ~= '' then
    return reply('ignored')
  end

  if st.state == OPEN and check_type == 'wait' then
    check_transition_keys(h)
    local facts = { failures = format_number(st.hcf) }
    return reply('half_open', transition(h, st, now, HALF_OPEN, 'open_wait_elapsed', facts, tostring(token)))
  end
  if check_type == 'recovery' and st.state == OPEN then
    if result == 'failure' then
      st.hcf = st.hcf + 1
      st.hcs = 0
      st.hca = now
      save_state(h.state_key, st, { 'hcf', 'hcs', 'hca' })
      return reply('counted')
    end
    st.hcs = st.hcs + 1
    if st.hcs < needed then
      st.hca = now
      save_state(h.state_key, st, { 'hcs', 'hca' })
      return reply('counted')
    end
    check_transition_keys(h)
    local to = recovered_state(permits)
    local checks = { failures = format_number(st.hcf), calls = format_number(st.hcf + st.hcs) }
    return reply(to, transition(h, st, now, to, 'recovery_check_passed', checks, tostring(token)))
  end
  if check_type == 'idle' and st.state == CLOSED and result == 'failure' then
    check_transition_keys(h)
    return reply('opened', transition(h, st, now, OPEN, 'idle_probe_failed', { failures = '1', calls = '1' }, tostring(token)))
  end
  return reply('ignored')
end

-- The trial permits out, as {id, expiry} pairs, without those expired.
local function live_permits(text, now)
  local live = {}
  for id, expiry in gmatch(text, '(%d+):(%d+)') do
    if tonumber(expiry) > now then
      live[#live + 1] = { id, tonumber(expiry) }
    end
  end
  return live
end

local function permits_text(list)
  local parts = {}
  for i = 1, #list do
    parts[i] = list[i][1] .. ':' .. format_number(list[i][2])
  end
  return concat(parts, ',')
end

local function check_permits_text(key, text)
  if not match(text, '^[%d:,]*$') then
    corrupt(key, 'tp', text)
  end
end

-- The breaker's state for a permit or trial call in generation `gen`, the server time,
-- and why it is refused ('stale_gen', 'not_half_open'), or nil when it is half-open in `gen`.
local function trial_state(h, gen)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros, TRIAL_GROUPS)
  if gen ~= st.gen then
    return st, now, 'stale_gen'
  end
  if st.state ~= HALF_OPEN then
    return st, now, 'not_half_open'
  end
  check_permits_text(h.state_key, st.tp)
  return st, now, nil
end

-- ARGV[i..i+1]: trial permits (1..MAX_TRIAL_PERMITS) and trial successes that close (1..permits).
local function trial_args(args, i)
  local permits = int_arg(args, i, 'trial permits', 1, MAX_TRIAL_PERMITS)
  return permits, int_arg(args, i + 1, 'trial successes', 1, permits)
end

--[[ zv1_permit: ask for a permit to make one trial call while half-open.
KEYS: state, events.
ARGV: header (channel, actor, retention), generation, trial permits, trial successes,
  permit ttl ms (after it an unreported permit is reclaimed).
Across every instance at most `trial permits` trial calls are let through per half-open
period: permits out plus successful trials. A permit not reported within its ttl is
reclaimed (its instance may have died).
Returns: {status, state, gen, epoch ('' before the first write), permit id or '', ms};
status is
  'granted'        the permit, valid for ms
  'exhausted'      none free; one may be freed in ms (0: only by a transition)
  'not_half_open'  the breaker is not half-open: nothing changes
  'stale_gen'      the breaker has moved to another generation: nothing changes
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT, ZV_NOPERM, ZV_REFUSED. ]]
local function permit(keys, args)
  local h = header(keys, args, 7)
  local gen = int_arg(args, 4, 'generation', 0, SAFE_INTEGER)
  local permits = trial_args(args, 5)
  local ttl = int_arg(args, 7, 'permit ttl', 1, MAX_TTL_MS)
  local st, now, refused = trial_state(h, gen)

  local function reply(status, id, ms)
    return { status, st.state, st.gen, visible_epoch(st), id or '', ms or 0 }
  end
  if refused then
    return reply(refused)
  end
  local live = live_permits(st.tp, now)
  if #live + st.ts >= permits then
    local soonest = 0
    for i = 1, #live do
      local left = live[i][2] - now
      if soonest == 0 or left < soonest then
        soonest = left
      end
    end
    return reply('exhausted', '', soonest)
  end
  st.pn = st.pn + 1
  live[#live + 1] = { format_number(st.pn), now + ttl }
  st.tp = permits_text(live)
  save_state(h.state_key, st, { 'tp', 'pn' })
  return reply('granted', format_number(st.pn), ttl)
end

--[[ zv1_trial: the result of a trial call made with a permit.
KEYS: state, events.
ARGV: header (channel, actor, retention), generation, permit id, result ('success' |
  'failure' | 'ignored'), trial permits, trial successes.
A success counts towards the successes that close the circuit; a failure reopens it (the
next recovery waits for the next backoff delay); 'ignored' (the caller gave up, or the
call counts as neither) gives the permit back. A permit is reported once.
Returns: {status, state, gen, epoch ('' before the first write), trial_successes (after
the report: 0 once a transition started a new period), transition JSON or ''}; status is
  'counted'         a successful trial was counted
  'released'        an ignored trial gave its permit back
  'closed'          enough trials succeeded: the circuit closed
  'opened'          the trial failed: the circuit reopened
  'unknown_permit'  no such permit out (reported before, or reclaimed): nothing changes
  'not_half_open'   the breaker is not half-open: nothing changes
  'stale_gen'       the breaker has moved to another generation: nothing changes
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT, ZV_NOPERM, ZV_REFUSED. ]]
local function trial(keys, args)
  local h = header(keys, args, 8)
  local gen = int_arg(args, 4, 'generation', 0, SAFE_INTEGER)
  local id = int_arg(args, 5, 'permit', 1, SAFE_INTEGER)
  local result = enum_arg(args, 6, 'result', TRIAL_RESULTS)
  local _, needed = trial_args(args, 7)
  local st, now, refused = trial_state(h, gen)

  local function reply(status, message)
    return { status, st.state, st.gen, visible_epoch(st), st.ts, message or '' }
  end
  if refused then
    return reply(refused)
  end
  -- An expired permit was reclaimed, whether or not another was granted since: its
  -- report changes nothing (the client ends a trial call before its permit expires).
  local live = live_permits(st.tp, now)
  local kept, found = {}, false
  for i = 1, #live do
    if tonumber(live[i][1]) == id then
      found = true
    else
      kept[#kept + 1] = live[i]
    end
  end
  if not found then
    return reply('unknown_permit')
  end
  if result == 'ignored' then
    st.tp = permits_text(kept)
    save_state(h.state_key, st, { 'tp' })
    return reply('released')
  end
  if result == 'failure' then
    check_transition_keys(h)
    local facts = { failures = '1', calls = format_number(st.ts + 1) }
    return reply('opened', transition(h, st, now, OPEN, 'trial_call_failed', facts, ''))
  end
  st.ts = st.ts + 1
  if st.ts >= needed then
    check_transition_keys(h)
    local facts = { failures = '0', calls = format_number(st.ts) }
    return reply('closed', transition(h, st, now, CLOSED, 'trial_calls_passed', facts, ''))
  end
  st.tp = permits_text(kept)
  save_state(h.state_key, st, { 'tp', 'ts' })
  return reply('counted')
end

--[[ zv1_sync: read a breaker as zv1_state does, but only where the caller can also write
it: an instance that has been deciding alone rejoins the shared state with this call.
KEYS: state, events.  ARGV: header (channel, actor, retention), strategy spec (as zv1_record
takes it).
Not flagged no-writes, so Redis itself refuses it where no write would be accepted: out of
memory under a noeviction policy (OOM), on a read-only replica (READONLY), while clients
are paused for writes. It checks what the caller's next writes would read (the window
for this strategy, the trial permits) and may write with (key types, rights), and writes
nothing.
Returns: the name/value pairs of zv1_state.
Errors: ZV_BADARG, ZV_WRONGTYPE (a key of another type), ZV_CORRUPT, ZV_NOPERM (the user
may not run HSET, XADD or PUBLISH on the breaker's keys and channel), ZV_REFUSED. ]]
local function sync(keys, args)
  local h = header(keys, args, 4)
  local s = strategy_arg(args, 4)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros, ALL_GROUPS)
  if shape_of(st.cfg) == s.shape then
    check_window_text(h.state_key, st.w, s)
  end
  check_permits_text(h.state_key, st.tp)
  check_transition_keys(h)
  return snapshot(st, now)
end

--[[ zv1_explain: why the breaker is in its state, read without changing it.
KEYS: state, events.  ARGV: none.
Returns: the name/value pairs of zv1_state, then, in this order: cfg (the strategy spec
the last recorded call stored, as zv1_record takes it; empty before the first), failures,
calls, slow (what the window holds now, on server time, counted as the audit entry counts
them: for consecutive failures, failures and calls are the failure run; a time window
leaves out the buckets that expired; 0 before the first recorded call and after a
transition, but for an operator's control, which keeps the window unless it opens the
circuit or resets it), failure_reached, slow_reached (1 when those figures reach the failure rule,
or the slow-call rule, of the stored spec, as zv1_record judges them; else 0), permits_out
(trial permits out and not expired), entries (the length of the events stream), last_id,
last (the newest entry of the events stream: its id and its field/value list as stored;
empty when the stream is).
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT, ZV_NOPERM, ZV_REFUSED. ]]
local function explain(keys, args)
  check_counts(keys, args, 0)
  local state_key, events_key = keys[1], keys[2]
  local now, micros = server_time()
  local st = load_state(state_key, now, micros, ALL_GROUPS)
  check_key_type(events_key, 'stream')
  check_permits_text(state_key, st.tp)
  local s = stored_strategy(state_key, st.cfg)
  local failures, calls, slow, failed, slowed = 0, 0, 0, false, false
  if s then
    failures, calls, slow = fold(state_key, st, s, NO_OUTCOMES, now)
    failed, slowed = rules_reached(s, failures, calls, slow)
  end
  local newest = checked('XREVRANGE', events_key, '+', '-', 'COUNT', 1)[1] or { '', {} }
  return append_all(snapshot(st, now), {
    'cfg', st.cfg,
    'failures', failures,
    'calls', calls,
    'slow', slow,
    'failure_reached', failed and 1 or 0,
    'slow_reached', slowed and 1 or 0,
    'permits_out', #live_permits(st.tp, now),
    'entries', checked('XLEN', events_key),
    'last_id', newest[1],
    'last', newest[2],
  })
end

local CONTROL_ACTIONS = { open = true, close = true, monitor = true, release = true, reset = true, expire = true }
-- The modes the forcing actions set: the state, and the reason of the entry.
local FORCING = {
  open = { mode = FORCED_OPEN, to = OPEN, reason = 'forced_open' },
  close = { mode = FORCED_CLOSED, to = CLOSED, reason = 'forced_closed' },
  monitor = { mode = MONITOR, to = CLOSED, reason = 'monitored' },
}
local FLAGS = { ['0'] = true, ['1'] = true }

--[[ zv1_control: an operator's control of the breaker, for every instance at once.
KEYS: state, events.
ARGV: header (channel, actor, retention: 0 trims nothing, so that an operator's call never
  cuts the history an application keeps), action, note (the operator's reason, 1 to
  MAX_NOTE_BYTES bytes; '' for expire), for ms (0: no expiry; 1..MAX_MODE_MS for open,
  close and monitor), create (optional, '0' or '1', default '0': with '0' a breaker
  without a state hash is 'unknown' and nothing is written).
Actions, each one transition (gen + 1, one audit entry with actor, note and until, published
like any other; the reason is the word in brackets):
  open     [forced_open]    state open, mode forced_open: calls fail fast everywhere, health
                            checks and the open wait pause (zv1_health answers 'ignored')
  close    [forced_closed]  state closed, mode forced_closed: outcomes count, nothing trips
  monitor  [monitored]      state closed, mode monitor: outcomes count; a rule reached is
                            a would_open entry, not a trip (see zv1_record)
  release  [released]       mode ended; the window decides: a window that reaches a rule of
                            the stored strategy opens (the rule in `rule`, recovery starts
                            as after a trip), any other closes
  reset    [reset]          mode ended; closed, the window and recovery progress cleared
  expire   [expired]        a mode whose expiry has passed ends, as release does
The window is kept by open, close, monitor and a release or expiry that closes. A mode with an
expiry ends at that server time whoever is alive, and the first writing call after it (this one, zv1_record, zv1_health, zv1_acquire, zv1_renew)
writes its 'expired' entry first: an instance of an earlier revision that holds the lease of
a forced-open breaker ends it at its next renewal. Forcing again replaces the mode, its note and its expiry.
Returns: {status, state, gen, epoch ('' before the first write), transition JSON or ''};
status is
  'applied'  the control's transition was made (after the entry of a mode whose expiry had
             passed, if one was due)
  'unknown'  no such breaker (no state hash) and create is '0': nothing written
  'no_mode'  release or expire with no mode set: nothing written (but an expired mode's
             entry, if one was due)
  'not_due'  expire before the mode's expiry, or of a mode without one: nothing written
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT, ZV_NOPERM, ZV_REFUSED. ]]
local function control(keys, args)
  local h = header(keys, args, 7, 0)
  local action = enum_arg(args, 4, 'action', CONTROL_ACTIONS)
  local note = required_arg(args, 5, 'note')
  if action == 'expire' then
    if note ~= '' then
      fail('ZV_BADARG', "expire takes no note (''), got " .. show(note))
    end
  else
    text_arg(args, 5, 'note', MAX_NOTE_BYTES)
  end
  local for_ms = int_arg(args, 6, 'for', 0, MAX_MODE_MS)
  if for_ms > 0 and not FORCING[action] then
    fail('ZV_BADARG', 'only open, close and monitor take an expiry, got ' .. action .. ' for ' .. for_ms .. ' ms')
  end
  local create = args[7] == nil and '0' or enum_arg(args, 7, 'create', FLAGS)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros, ALL_GROUPS)
  check_permits_text(h.state_key, st.tp)
  if st.cfg ~= '' then
    check_window_text(h.state_key, st.w, stored_strategy(h.state_key, st.cfg))
  end

  local function reply(status, message)
    return { status, st.state, st.gen, visible_epoch(st), message or '' }
  end
  if st.new and create == '0' then
    return reply('unknown')
  end
  check_transition_keys(h)
  local expired = settle_expired(h, st, now)
  local mode_name, untl = mode_parts(st.mode)
  if action == 'expire' then
    if expired then
      return reply('applied', expired)
    end
    return reply(mode_name == '' and 'no_mode' or 'not_due')
  end
  if action == 'release' then
    if mode_name == '' then
      return reply('no_mode', expired)
    end
    return reply('applied', end_mode(h, st, now, 'released', note, untl))
  end
  if action == 'reset' then
    set_mode(st, '', 0)
    return reply('applied', transition(h, st, now, CLOSED, 'reset', { note = note }, '', MODE_FIELDS))
  end
  local forcing = FORCING[action]
  local ends = for_ms > 0 and now + for_ms or 0
  set_mode(st, forcing.mode, ends, h.actor, note, now)
  local facts = { note = note, until_ms = ends, keep_window = true }
  return reply('applied', transition(h, st, now, forcing.to, forcing.reason, facts, '', MODE_FIELDS))
end

local ISOLATE_ACTIONS = { isolate = true, rejoin = true }
local REJOIN_REASONS = { recovered = true, fleet_opened = true, fleet_moved = true, stopped = true }
local ISOLATED = 'isolated'

-- Appends an instance-level entry to the instance-events stream (never published): the
-- actor's move `from` -> `to`, with the fleet's generation (not incremented), state and mode.
local function instance_entry(h, key, st, now, from, to, reason, facts)
  local fields = {
    'from', from, 'to', to, 'reason', reason,
    'failures', facts.failures or '', 'calls', facts.calls or '', 'slow', facts.slow or '', 'rate', facts.rate or '',
    'threshold', facts.threshold or '', 'window', facts.window or '',
    'actor', h.actor, 'time', format_number(now), 'gen', format_number(st.gen), 'state', st.state,
    'mode', (mode_parts(st.mode)), 'rule', facts.rule or '',
  }
  if h.retention > 0 then
    return checked('XADD', key, 'MAXLEN', '~', h.retention, '*', unpack(fields))
  end
  return checked('XADD', key, '*', unpack(fields))
end

--[[ zv1_isolate: an instance that alone sees failures takes itself out of the fleet's
calls (isolate), or comes back (rejoin). The fleet's state is not changed.
KEYS: state, events, instances (hash, see "Reporters"), instance-events (stream).
ARGV: header (channel, actor, retention: approximate MAXLEN of the instance-events stream,
  0 trims nothing), action ('isolate' | 'rejoin'), generation (the fleet generation the
  instance saw), then
  isolate: failures, calls, slow (0..MAX_COUNT each, failures and slow at most calls): the
    instance's OWN window figures, as it holds them (for consecutive failures, failures =
    calls = its run); 8 arguments in all
  rejoin: reason ('recovered' | 'fleet_opened' | 'fleet_moved' | 'stopped'); 6 arguments in all
Every argument and key type is checked before any write; a mode whose expiry has passed is
ended first (its 'expired' entry on the events stream, as by every writing function).
isolate: the server judges the figures by the fleet's stored strategy (cfg). Statuses, in
the order they are decided:
  'stale_gen'    generation is not the fleet's: nothing written
  'not_closed'   the fleet is not closed (forced open included): nothing written
  'not_reached'  the figures reach no rule of the stored strategy (or none is stored yet):
                 nothing written
  'mode'         the fleet is forced closed: nothing written
  'monitored'    monitor mode: an instance entry, closed to closed, reason 'would_isolate',
                 the rule reached in `rule`; the instance stays in
  'isolated'     an instance entry, closed to isolated, reason the rule reached
                 (consecutive_failures | failure_rate | slow_call_rate); iso_ms set to now in
                 the actor's reporter entry (created, of the current generation, if absent
                 or of another generation). An actor isolated already in this generation
                 answers 'isolated' with no entry id and nothing written.
rejoin (whatever the generation: an isolation ends whatever the fleet did meanwhile):
  'rejoined'      the actor's reporter entry has iso_ms > 0: an instance entry from isolated
                  to the fleet's state, reason the rejoin's; iso_ms cleared
  'not_isolated'  no such entry (never isolated, rejoined already, or dropped by the
                  bound): nothing written
Instance entry fields: from, to, reason, failures, calls, slow, rate, threshold, window (as
a trip's entry has them; '' for a rejoin), actor, time (server ms), gen (the fleet's
generation), state (the fleet's), mode (the fleet's), rule.
Returns: {status, fleet state, gen, epoch ('' before the first write), entry id or ''}.
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT, ZV_NOPERM, ZV_REFUSED. ]]
local function isolate(keys, args)
  local h = header(keys, args, 8, 0, 4)
  local action = enum_arg(args, 4, 'action', ISOLATE_ACTIONS)
  local gen = int_arg(args, 5, 'generation', 0, SAFE_INTEGER)
  local failures, calls, slow, why
  if action == 'isolate' then
    failures = int_arg(args, 6, 'failures', 0, MAX_COUNT)
    calls = int_arg(args, 7, 'calls', 0, MAX_COUNT)
    slow = int_arg(args, 8, 'slow', 0, MAX_COUNT)
    if failures > calls or slow > calls then
      fail('ZV_BADARG', 'failures and slow calls must not exceed calls, got failures ' .. failures .. ', slow ' .. slow
        .. ', calls ' .. calls)
    end
  else
    if #args > 6 then
      fail('ZV_BADARG', 'rejoin takes 6 arguments, got ' .. #args)
    end
    why = enum_arg(args, 6, 'reason', REJOIN_REASONS)
  end
  local instances_key, log_key = keys[3], keys[4]
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros, RECORD_GROUPS)
  local s = stored_strategy(h.state_key, st.cfg)
  check_key_type(h.events_key, 'stream')
  check_key_type(log_key, 'stream')
  local own = read_reporter(instances_key, h.actor)
  check_rights(append_all({ 'XADD', log_key }, reporter_rights(instances_key)))
  if st.mode ~= '' then
    settle_expired(h, st, now)
  end

  local function reply(status, id)
    return { status, st.state, st.gen, visible_epoch(st), id or '' }
  end
  if action == 'rejoin' then
    if not own or own.iso_ms == 0 then
      return reply('not_isolated')
    end
    local id = instance_entry(h, log_key, st, now, ISOLATED, st.state, why, {})
    -- Its failures before it rejoined were its own: they no longer make it a failing
    -- instance of the window.
    own.iso_ms, own.fail_pos, own.fail_ms = 0, 0, 0
    checked('HSET', instances_key, h.actor, reporter_text(own))
    return reply('rejoined', id)
  end
  if gen ~= st.gen then
    return reply('stale_gen')
  end
  if st.state ~= CLOSED then
    return reply('not_closed')
  end
  local reason, facts
  if s then
    reason, facts = judge(s, failures, calls, slow)
  end
  if not reason then
    return reply('not_reached')
  end
  local mode_name = mode_parts(st.mode)
  if mode_name == FORCED_CLOSED then
    return reply('mode')
  end
  if mode_name == MONITOR then
    facts.rule = reason
    return reply('monitored', instance_entry(h, log_key, st, now, CLOSED, CLOSED, 'would_isolate', facts))
  end
  local mine = own and own.gen == st.gen and own or nil
  if mine and mine.iso_ms > 0 then
    return reply('isolated')
  end
  local id = instance_entry(h, log_key, st, now, CLOSED, ISOLATED, reason, facts)
  mine = mine or { gen = st.gen, last_pos = 0, last_ms = 0, fail_pos = 0, fail_ms = 0 }
  mine.iso_ms = now
  write_reporter(instances_key, h.actor, mine)
  return reply('isolated', id)
end

redis.register_function{ function_name = 'zv1_revision', callback = guard(revision), flags = { 'no-writes' } }
redis.register_function{ function_name = 'zv1_state', callback = guard(read_state), flags = { 'no-writes' } }
redis.register_function{ function_name = 'zv1_explain', callback = guard(explain), flags = { 'no-writes' } }
redis.register_function('zv1_sync', guard(sync))
redis.register_function('zv1_record', guard(record))
redis.register_function('zv1_acquire', guard(acquire))
redis.register_function('zv1_renew', guard(renew))
redis.register_function('zv1_release', guard(release))
redis.register_function('zv1_health', guard(health))
redis.register_function('zv1_permit', guard(permit))
redis.register_function('zv1_trial', guard(trial))
redis.register_function('zv1_control', guard(control))
redis.register_function('zv1_isolate', guard(isolate))
