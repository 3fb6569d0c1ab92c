#!lua name=zenvark_v1
--[[
Zenvark, the server half: one circuit breaker per set of keys, decided here.

Every function takes the same three keys, built by src/keys.ts, all in one hash slot:
  KEYS[1]  <prefix>:{<id>}:state   hash: state, generation, lease, recovery progress
  KEYS[2]  <prefix>:{<id>}:events  stream: one entry per transition (the audit log)
  KEYS[3]  <prefix>:{<id>}:window  string: the sliding window of a count or time strategy

Writing functions share an ARGV header:
  ARGV[1] channel    where transitions and lease releases are published
  ARGV[2] actor      instance id (or operator name) that reports; written to the audit log
  ARGV[3] retention  approximate MAXLEN of the events stream

Answers come in two kinds. Expected outcomes are data: a status string first
('ok', 'opened', 'stale_gen', 'stale_token', ...). Misuse raises an error whose first
word is a stable code:
  ZV_BADARG     an argument is missing, malformed or out of range
  ZV_WRONGTYPE  a breaker key holds a value of another type
  ZV_CORRUPT    a breaker key holds a value this library did not write
Every argument and key is checked before the first write: Redis does not roll back a
function that fails halfway.

Time is always server time (TIME), in milliseconds.
]]

local REVISION = 1

local CLOSED = 'closed'
local OPEN = 'open'
local HALF_OPEN = 'half_open'
local KNOWN_STATES = { [CLOSED] = true, [OPEN] = true, [HALF_OPEN] = true }

-- Codes of single outcomes in a count window, oldest first.
local OK, FAIL, SLOW_OK, SLOW_FAIL = '0', '1', '2', '3'

-- A time window is kept as this many buckets of duration / TIME_BUCKETS each.
local TIME_BUCKETS = 20
local BUCKET_BYTES = 32

local MAX_COUNT = 1000000000
local MAX_COUNT_WINDOW = 10000
local MAX_DURATION_MS = 86400000
local MAX_TTL_MS = 3600000
local MAX_RETENTION = 1000000
local RATE_EPSILON = 1e-9

local STATE_FIELDS = { 'state', 'gen', 'epoch', 'since', 'run', 'cfg', 'lh', 'lt', 'lu', 'hcf', 'hca', 'last' }

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
    text = string.sub(text, 1, 37) .. '...'
  end
  return "'" .. text .. "'"
end

local function format_number(n)
  if n == math.floor(n) and math.abs(n) <= 9007199254740992 then
    return string.format('%d', n)
  end
  return string.format('%.6g', n)
end

local function int_arg(args, i, name, min, max)
  local raw = args[i]
  if raw == nil then
    fail('ZV_BADARG', name .. ' is missing (ARGV[' .. i .. '])')
  end
  if not string.match(raw, '^%-?%d+$') then
    fail('ZV_BADARG', name .. ' must be an integer, got ' .. show(raw))
  end
  local n = tonumber(raw)
  if n < min or n > max then
    fail('ZV_BADARG', name .. ' must be in [' .. format_number(min) .. ', ' .. format_number(max) .. '], got ' .. raw)
  end
  return n
end

-- A rate in (0, 1].
local function rate_arg(args, i, name)
  local raw = args[i]
  if raw == nil then
    fail('ZV_BADARG', name .. ' is missing (ARGV[' .. i .. '])')
  end
  local n = tonumber(raw)
  if n == nil or n ~= n or not string.match(raw, '^[%d%.eE%+%-]+$') then
    fail('ZV_BADARG', name .. ' must be a number, got ' .. show(raw))
  end
  if n <= 0 or n > 1 then
    fail('ZV_BADARG', name .. ' must be in (0, 1], got ' .. raw)
  end
  return n
end

local function text_arg(args, i, name, max_length)
  local raw = args[i]
  if raw == nil then
    fail('ZV_BADARG', name .. ' is missing (ARGV[' .. i .. '])')
  end
  if #raw == 0 or #raw > max_length then
    fail('ZV_BADARG', name .. ' must be 1 to ' .. max_length .. ' bytes long, got ' .. #raw)
  end
  return raw
end

local function enum_arg(args, i, name, allowed)
  local raw = args[i]
  if raw == nil then
    fail('ZV_BADARG', name .. ' is missing (ARGV[' .. i .. '])')
  end
  if not allowed[raw] then
    local names = {}
    for k in pairs(allowed) do
      names[#names + 1] = k
    end
    table.sort(names)
    fail('ZV_BADARG', name .. ' must be one of ' .. table.concat(names, ', ') .. ', got ' .. show(raw))
  end
  return raw
end

local function check_keys(keys)
  if #keys ~= 3 then
    fail('ZV_BADARG', 'expected 3 keys (state, events, window), got ' .. #keys)
  end
end

-- The ARGV header of every writing function.
local function header(keys, args)
  check_keys(keys)
  return {
    state_key = keys[1],
    events_key = keys[2],
    window_key = keys[3],
    channel = text_arg(args, 1, 'channel', 1024),
    actor = text_arg(args, 2, 'actor', 256),
    retention = int_arg(args, 3, 'retention', 1, MAX_RETENTION),
  }
end

---------------------------------------------------------------------------------------
-- Time and the state hash
---------------------------------------------------------------------------------------

-- Server time: milliseconds, and a microsecond string that names a state incarnation.
local function server_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t[1] .. string.format('%06d', tonumber(t[2]))
end

local function fresh_state(now, micros)
  return {
    state = CLOSED, gen = 0, epoch = micros, since = now, run = 0, cfg = '',
    lh = '', lt = 0, lu = 0, hcf = 0, hca = now, last = -1, new = true,
  }
end

local function corrupt(key, field, value)
  fail('ZV_CORRUPT', key .. ' field ' .. field .. ' holds ' .. show(value) .. ', not written by zenvark')
end

local function stored_int(key, field, value)
  if value == false or value == nil or not string.match(value, '^%-?%d+$') then
    corrupt(key, field, value)
  end
  return tonumber(value)
end

-- Reads and validates the state hash. A missing hash reads as a fresh closed breaker;
-- `new` is then set so that the first write creates every field.
local function load_state(key, now, micros)
  local values = redis.pcall('HMGET', key, unpack(STATE_FIELDS))
  if values.err then
    fail('ZV_WRONGTYPE', key .. ' is not a hash')
  end
  local all_missing = true
  for i = 1, #STATE_FIELDS do
    if values[i] then
      all_missing = false
    end
  end
  if all_missing then
    if redis.call('EXISTS', key) == 1 then
      fail('ZV_CORRUPT', key .. ' is a hash without zenvark fields')
    end
    return fresh_state(now, micros)
  end
  local st = { new = false }
  st.state = values[1]
  if not KNOWN_STATES[st.state] then
    corrupt(key, 'state', st.state)
  end
  st.gen = stored_int(key, 'gen', values[2])
  st.epoch = values[3]
  if not st.epoch or not string.match(st.epoch, '^%d+$') then
    corrupt(key, 'epoch', st.epoch)
  end
  st.since = stored_int(key, 'since', values[4])
  st.run = stored_int(key, 'run', values[5])
  st.cfg = values[6]
  if not st.cfg then
    corrupt(key, 'cfg', st.cfg)
  end
  st.lh = values[7]
  if not st.lh then
    corrupt(key, 'lh', st.lh)
  end
  st.lt = stored_int(key, 'lt', values[8])
  st.lu = stored_int(key, 'lu', values[9])
  st.hcf = stored_int(key, 'hcf', values[10])
  st.hca = stored_int(key, 'hca', values[11])
  st.last = stored_int(key, 'last', values[12])
  return st
end

-- Writes the named fields, or all of them when the hash is new.
local function save_state(key, st, names)
  if st.new then
    names = STATE_FIELDS
    st.new = false
  end
  local argv = {}
  for i = 1, #names do
    argv[#argv + 1] = names[i]
    argv[#argv + 1] = st[names[i]]
  end
  redis.call('HSET', key, unpack(argv))
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

-- Everything a client needs to act on a breaker, as name/value pairs.
local function snapshot(st, now)
  local holder = ''
  if lease_valid(st, now) then
    holder = st.lh
  end
  local idle = -1
  if st.last >= 0 then
    idle = math.max(0, now - st.last)
  end
  return {
    'state', st.state,
    'gen', st.gen,
    'epoch', visible_epoch(st),
    'age_ms', math.max(0, now - st.since),
    'holder', holder,
    'token', st.lt,
    'lease_ms', lease_remaining(st, now),
    'recovery_failures', st.hcf,
    'recovery_age_ms', math.max(0, now - st.hca),
    'idle_ms', idle,
    'revision', REVISION,
  }
end

local function append_all(target, items)
  for i = 1, #items do
    target[#target + 1] = items[i]
  end
  return target
end

---------------------------------------------------------------------------------------
-- Transitions: the only place that changes `state`
---------------------------------------------------------------------------------------

local function check_type(key, expected)
  local kind = redis.call('TYPE', key).ok
  if kind ~= expected and kind ~= 'none' then
    fail('ZV_WRONGTYPE', key .. ' is a ' .. kind .. ', expected a ' .. expected)
  end
end

-- A transition appends to the events stream and deletes the window: both keys must be
-- ours before anything is written.
local function check_transition_keys(h)
  check_type(h.events_key, 'stream')
  check_type(h.window_key, 'string')
end

-- Moves the breaker to `to`, appends one audit entry and publishes it. The caller has
-- validated everything and called check_transition_keys(h) before its first write.
-- `facts` holds the numbers behind the decision; `token` is the actor's lease token or ''.
-- Returns the published JSON text.
local function transition(h, st, now, to, reason, facts, token)
  local from = st.state
  st.state = to
  st.gen = st.gen + 1
  st.since = now
  st.run = 0
  st.hcf = 0
  st.hca = now
  save_state(h.state_key, st, { 'state', 'gen', 'since', 'run', 'hcf', 'hca' })
  redis.call('DEL', h.window_key)

  local entry = {
    from = from, to = to, reason = reason, gen = format_number(st.gen),
    failures = facts.failures or '', calls = facts.calls or '', rate = facts.rate or '',
    threshold = facts.threshold or '', window = facts.window or '',
    actor = h.actor, token = token, time = format_number(now),
  }
  local id = redis.call('XADD', h.events_key, 'MAXLEN', '~', h.retention, '*',
    'from', entry.from, 'to', entry.to, 'reason', entry.reason, 'gen', entry.gen,
    'failures', entry.failures, 'calls', entry.calls, 'rate', entry.rate,
    'threshold', entry.threshold, 'window', entry.window,
    'actor', entry.actor, 'token', entry.token, 'time', entry.time)
  entry.kind = 'transition'
  entry.key = h.state_key
  entry.epoch = st.epoch
  entry.id = id
  local message = cjson.encode(entry)
  redis.call('PUBLISH', h.channel, message)
  return message
end

---------------------------------------------------------------------------------------
-- Strategies
---------------------------------------------------------------------------------------

local STRATEGY_KINDS = { consecutive = true, count = true, time = true }

-- ARGV[i..i+3]: kind, threshold, window, minimum calls.
--   consecutive: threshold = failures in a row (integer); window and minimum are 0
--   count:       threshold = failure rate in (0, 1]; window = calls; minimum calls
--   time:        threshold = failure rate in (0, 1]; window = duration ms; minimum calls
local function strategy_arg(args, i)
  local s = { kind = enum_arg(args, i, 'strategy', STRATEGY_KINDS) }
  if s.kind == 'consecutive' then
    s.threshold = int_arg(args, i + 1, 'threshold', 1, MAX_COUNT)
    s.window = int_arg(args, i + 2, 'window', 0, 0)
    s.min_calls = int_arg(args, i + 3, 'minimum calls', 0, 0)
  elseif s.kind == 'count' then
    s.threshold = rate_arg(args, i + 1, 'threshold')
    s.window = int_arg(args, i + 2, 'window', 1, MAX_COUNT_WINDOW)
    s.min_calls = int_arg(args, i + 3, 'minimum calls', 1, s.window)
  else
    s.threshold = rate_arg(args, i + 1, 'threshold')
    s.window = int_arg(args, i + 2, 'window', 10, MAX_DURATION_MS)
    s.min_calls = int_arg(args, i + 3, 'minimum calls', 1, MAX_COUNT)
  end
  -- Only the window's shape decides whether stored window data can be kept.
  s.shape = s.kind
  if s.kind ~= 'consecutive' then
    s.shape = s.kind .. ':' .. s.window
  end
  return s
end

-- ARGV[i..i+6]: fast successes, fast failures, slow successes, slow failures, and the
-- runs of failures at the head, longest anywhere, and at the tail of the batch.
local function summary_arg(args, i)
  local s = {
    ok = int_arg(args, i, 'successes', 0, MAX_COUNT),
    fail = int_arg(args, i + 1, 'failures', 0, MAX_COUNT),
    slow_ok = int_arg(args, i + 2, 'slow successes', 0, MAX_COUNT),
    slow_fail = int_arg(args, i + 3, 'slow failures', 0, MAX_COUNT),
    head = int_arg(args, i + 4, 'head run', 0, MAX_COUNT),
    max_run = int_arg(args, i + 5, 'longest run', 0, MAX_COUNT),
    tail = int_arg(args, i + 6, 'tail run', 0, MAX_COUNT),
  }
  s.successes = s.ok + s.slow_ok
  s.failures = s.fail + s.slow_fail
  s.calls = s.successes + s.failures
  if s.calls == 0 then
    fail('ZV_BADARG', 'the summary holds no outcome')
  end
  if s.max_run > s.failures or s.head > s.max_run or s.tail > s.max_run then
    fail('ZV_BADARG', 'runs must satisfy head, tail <= longest <= failures, got head ' .. s.head
      .. ', longest ' .. s.max_run .. ', tail ' .. s.tail .. ', failures ' .. s.failures)
  end
  if s.successes == 0 and (s.head ~= s.failures or s.tail ~= s.failures) then
    fail('ZV_BADARG', 'without successes every run must equal failures')
  end
  if s.successes > 0 and s.head + s.tail > s.failures then
    fail('ZV_BADARG', 'head and tail runs overlap: head ' .. s.head .. ' + tail ' .. s.tail
      .. ' > failures ' .. s.failures)
  end
  if s.failures > 0 and s.max_run == 0 then
    fail('ZV_BADARG', 'longest run must be at least 1 when there are failures')
  end
  return s
end

local function rate_reached(failures, calls, threshold)
  return failures / calls >= threshold - RATE_EPSILON
end

local function rate_facts(failures, calls, s)
  return {
    failures = format_number(failures), calls = format_number(calls),
    rate = string.format('%.4f', failures / calls), threshold = format_number(s.threshold),
    window = s.shape,
  }
end

-- Each strategy folds a summary into its window and says whether the circuit trips.
-- They return (trips, facts, window_text); window_text nil means "nothing to store".

local function fold_consecutive(st, sum, s)
  local peak
  if sum.successes == 0 then
    st.run = st.run + sum.failures
    peak = st.run
  else
    peak = math.max(st.run + sum.head, sum.max_run)
    st.run = sum.tail
  end
  local facts = {
    failures = format_number(peak), calls = format_number(peak),
    threshold = format_number(s.threshold), window = s.shape,
  }
  return peak >= s.threshold, facts, nil
end

local function count_codes(text, pattern)
  local _, n = string.gsub(text, pattern, '')
  return n
end

-- The window is the last `window` outcomes as one code each, oldest first. A summary
-- does not say how its outcomes interleaved; successes are laid down before failures,
-- so that the failure run at the tail stays last.
local function fold_count(window_key, current, sum, s)
  if not string.match(current, '^[0123]*$') or #current > s.window then
    corrupt(window_key, '(value)', current)
  end
  local batch = string.rep(SLOW_OK, math.min(sum.slow_ok, s.window))
    .. string.rep(OK, math.min(sum.ok, s.window))
    .. string.rep(SLOW_FAIL, math.min(sum.slow_fail, s.window))
    .. string.rep(FAIL, math.min(sum.fail, s.window))
  local text = current .. batch
  if #text > s.window then
    text = string.sub(text, -s.window)
  end
  local calls = #text
  local failures = count_codes(text, '[13]')
  local trips = calls >= s.min_calls and rate_reached(failures, calls, s.threshold)
  return trips, rate_facts(failures, calls, s), text
end

-- The window is up to TIME_BUCKETS buckets, each four doubles packed with struct:
-- bucket number (server ms / bucket width), calls, failures, slow calls.
local function fold_time(window_key, current, sum, s, now)
  local n = #current / BUCKET_BYTES
  if n ~= math.floor(n) or n > TIME_BUCKETS then
    corrupt(window_key, '(value)', '<' .. #current .. ' bytes>')
  end
  local values = {}
  if n > 0 then
    values = { struct.unpack('<' .. string.rep('d', 4 * n), current) }
  end
  local width = s.window / TIME_BUCKETS
  local now_bucket = math.floor(now / width)
  local kept = {}
  local calls, failures, found = 0, 0, false
  for b = 0, n - 1 do
    local bucket, c, f, sl = values[4 * b + 1], values[4 * b + 2], values[4 * b + 3], values[4 * b + 4]
    -- Buckets from the future (a clock set back) are dropped with the expired ones.
    if bucket > now_bucket - TIME_BUCKETS and bucket <= now_bucket then
      if bucket == now_bucket then
        c = c + sum.calls
        f = f + sum.failures
        sl = sl + sum.slow_ok + sum.slow_fail
        found = true
      end
      append_all(kept, { bucket, c, f, sl })
      calls = calls + c
      failures = failures + f
    end
  end
  if not found then
    append_all(kept, { now_bucket, sum.calls, sum.failures, sum.slow_ok + sum.slow_fail })
    calls = calls + sum.calls
    failures = failures + sum.failures
  end
  local text = struct.pack('<' .. string.rep('d', #kept), unpack(kept))
  local trips = calls >= s.min_calls and rate_reached(failures, calls, s.threshold)
  return trips, rate_facts(failures, calls, s), text
end

local function read_window(key)
  local current = redis.pcall('GET', key)
  if type(current) == 'table' and current.err then
    fail('ZV_WRONGTYPE', key .. ' is not a string')
  end
  return current or ''
end

---------------------------------------------------------------------------------------
-- Registered functions
---------------------------------------------------------------------------------------

-- Turns our raised errors into clean error replies; anything else propagates as is.
local function guard(fn)
  return function(keys, args)
    local ok, result = pcall(fn, keys, args)
    if ok then
      return result
    end
    if type(result) == 'table' and result.zv then
      return redis.error_reply(result.zv)
    end
    error(result)
  end
end

--[[ zv1_revision: the revision of this library.
KEYS: none.  ARGV: none.
Returns: integer revision. ]]
local function revision()
  return REVISION
end

--[[ zv1_state: read a breaker without changing it.
KEYS: state, events, window.  ARGV: none.
Returns: name/value pairs: state, gen, epoch ('' before the first write), age_ms (time
in this state), holder ('' when no valid lease), token (last granted), lease_ms (left on
the lease), recovery_failures, recovery_age_ms (since the last recovery check, or the
transition), idle_ms (since the last recorded call, -1 if none), revision.
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT. ]]
local function read_state(keys)
  check_keys(keys)
  local now, micros = server_time()
  return snapshot(load_state(keys[1], now, micros), now)
end

--[[ zv1_record: fold a summary of call outcomes into the window; maybe trip.
KEYS: state, events, window.
ARGV: header (channel, actor, retention), generation the outcomes were observed under,
  summary (7 values, see summary_arg), strategy (4 values, see strategy_arg).
Returns: {status, state, gen, epoch, transition JSON or ''}; status is
  'ok'         counted, no transition
  'opened'     counted, and the circuit opened: the transition is the fifth element
  'stale_gen'  observed under another generation: not counted
  'not_closed' the breaker is not closed: not counted
  'reshaped'   counted into a window reset because its shape differs from the stored one
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT. ]]
local function record(keys, args)
  local h = header(keys, args)
  local gen = int_arg(args, 4, 'generation', 0, 9007199254740991)
  local sum = summary_arg(args, 5)
  local s = strategy_arg(args, 12)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros)

  if gen ~= st.gen then
    return { 'stale_gen', st.state, st.gen, visible_epoch(st), '' }
  end
  if st.state ~= CLOSED then
    return { 'not_closed', st.state, st.gen, visible_epoch(st), '' }
  end

  local status = 'ok'
  local current = ''
  if s.kind ~= 'consecutive' then
    current = read_window(h.window_key)
  end
  if st.cfg ~= s.shape then
    if st.cfg ~= '' then
      status = 'reshaped'
    end
    st.cfg = s.shape
    st.run = 0
    current = ''
  end

  local trips, facts, text
  if s.kind == 'consecutive' then
    trips, facts, text = fold_consecutive(st, sum, s)
  elseif s.kind == 'count' then
    trips, facts, text = fold_count(h.window_key, current, sum, s)
  else
    trips, facts, text = fold_time(h.window_key, current, sum, s, now)
  end
  st.last = now

  if trips then
    check_transition_keys(h)
    local reason = 'failure_rate'
    if s.kind == 'consecutive' then
      reason = 'consecutive_failures'
    end
    save_state(h.state_key, st, { 'cfg', 'last' })
    local message = transition(h, st, now, OPEN, reason, facts, '')
    return { 'opened', st.state, st.gen, st.epoch, message }
  end

  save_state(h.state_key, st, { 'cfg', 'run', 'last' })
  if text then
    redis.call('SET', h.window_key, text)
  end
  return { status, st.state, st.gen, st.epoch, '' }
end

--[[ zv1_acquire: take the breaker's lease, or learn who holds it.
KEYS: state, events, window.
ARGV: header (channel, actor, retention), ttl ms.
A free or expired lease is granted with a fencing token one above the last one granted.
The current holder asking again keeps its token and gets a fresh ttl.
Returns: {status, token, holder, lease_ms, snapshot pairs...}; status is
  'granted'  the actor holds the lease with `token` for lease_ms
  'held'     another instance holds it for lease_ms more
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT. ]]
local function acquire(keys, args)
  local h = header(keys, args)
  local ttl = int_arg(args, 4, 'ttl', 1, MAX_TTL_MS)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros)

  if lease_valid(st, now) and st.lh ~= h.actor then
    return append_all({ 'held', st.lt, st.lh, st.lu - now }, snapshot(st, now))
  end
  if not lease_valid(st, now) then
    st.lt = st.lt + 1
    st.lh = h.actor
  end
  st.lu = now + ttl
  save_state(h.state_key, st, { 'lh', 'lt', 'lu' })
  return append_all({ 'granted', st.lt, st.lh, ttl }, snapshot(st, now))
end

--[[ zv1_renew: extend a lease the actor holds.
KEYS: state, events, window.
ARGV: header (channel, actor, retention), token, ttl ms.
Returns: {status, token, holder, lease_ms}; status is
  'renewed'  extended to ttl from now
  'lost'     not held by this actor with this token any more (expired, released or taken);
             token, holder and lease_ms describe the current lease
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT. ]]
local function renew(keys, args)
  local h = header(keys, args)
  local token = int_arg(args, 4, 'token', 1, 9007199254740991)
  local ttl = int_arg(args, 5, 'ttl', 1, MAX_TTL_MS)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros)

  if st.new or not lease_valid(st, now) or st.lh ~= h.actor or st.lt ~= token then
    local holder = ''
    if lease_valid(st, now) then
      holder = st.lh
    end
    return { 'lost', st.lt, holder, lease_remaining(st, now) }
  end
  st.lu = now + ttl
  save_state(h.state_key, st, { 'lu' })
  return { 'renewed', st.lt, st.lh, ttl }
end

--[[ zv1_release: give a lease up, and tell the other instances at once.
KEYS: state, events, window.
ARGV: header (channel, actor, retention), token.
Returns: {status}; 'released', or 'not_holder' when the actor does not hold the lease
with this token (nothing changes).
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT. ]]
local function release(keys, args)
  local h = header(keys, args)
  local token = int_arg(args, 4, 'token', 1, 9007199254740991)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros)

  if st.new or st.lh ~= h.actor or st.lt ~= token then
    return { 'not_holder' }
  end
  st.lh = ''
  st.lu = 0
  save_state(h.state_key, st, { 'lh', 'lu' })
  redis.call('PUBLISH', h.channel, cjson.encode({ kind = 'released', key = h.state_key, token = tostring(token) }))
  return { 'released' }
end

local CHECK_TYPES = { recovery = true, idle = true }
local CHECK_RESULTS = { success = true, failure = true }

--[[ zv1_health: a health-check result from the lease holder.
KEYS: state, events, window.
ARGV: header (channel, actor, retention), token, generation, type ('recovery' | 'idle'),
  result ('success' | 'failure').
A recovery success closes an open circuit; a recovery failure is counted; an idle-probe
failure opens a closed circuit. Reports whose token is not the current, valid lease of
the actor change nothing.
Returns: {status, state, gen, epoch, recovery_failures, transition JSON or ''}; status is
  'closed' | 'opened'  the report caused that transition (fifth element: the entry)
  'counted'            a failed recovery check was counted
  'ignored'            nothing to do for this type in this state
  'stale_token'        the actor does not hold the lease with this token
  'stale_gen'          the breaker has moved to another generation
Errors: ZV_BADARG, ZV_WRONGTYPE, ZV_CORRUPT. ]]
local function health(keys, args)
  local h = header(keys, args)
  local token = int_arg(args, 4, 'token', 1, 9007199254740991)
  local gen = int_arg(args, 5, 'generation', 0, 9007199254740991)
  local kind = enum_arg(args, 6, 'type', CHECK_TYPES)
  local result = enum_arg(args, 7, 'result', CHECK_RESULTS)
  local now, micros = server_time()
  local st = load_state(h.state_key, now, micros)

  local function reply(status, message)
    return { status, st.state, st.gen, visible_epoch(st), st.hcf, message or '' }
  end
  if st.new or not lease_valid(st, now) or st.lh ~= h.actor or st.lt ~= token then
    return reply('stale_token')
  end
  if gen ~= st.gen then
    return reply('stale_gen')
  end

  local checks = { failures = format_number(st.hcf), calls = format_number(st.hcf + 1) }
  if kind == 'recovery' and st.state == OPEN then
    if result == 'success' then
      check_transition_keys(h)
      return reply('closed', transition(h, st, now, CLOSED, 'recovery_check_passed', checks, tostring(token)))
    end
    st.hcf = st.hcf + 1
    st.hca = now
    save_state(h.state_key, st, { 'hcf', 'hca' })
    return reply('counted')
  end
  if kind == 'idle' and st.state == CLOSED and result == 'failure' then
    check_transition_keys(h)
    return reply('opened', transition(h, st, now, OPEN, 'idle_probe_failed', { failures = '1', calls = '1' }, tostring(token)))
  end
  return reply('ignored')
end

redis.register_function{ function_name = 'zv1_revision', callback = guard(revision), flags = { 'no-writes' } }
redis.register_function{ function_name = 'zv1_state', callback = guard(read_state), flags = { 'no-writes' } }
redis.register_function('zv1_record', guard(record))
redis.register_function('zv1_acquire', guard(acquire))
redis.register_function('zv1_renew', guard(renew))
redis.register_function('zv1_release', guard(release))
redis.register_function('zv1_health', guard(health))
