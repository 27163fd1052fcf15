//! What lives in Redis, and the Lua scripts that change it atomically.
//!
//! Every key starts with `egw:` (one fleet per Redis database; use the
//! URL's `/DB` to keep fleets apart):
//!
//! | key | type | what | expiry |
//! |---|---|---|---|
//! | `egw:epoch` | int | session epochs, one per claim | — |
//! | `egw:owner:{uuid}` | string `"NODE EPOCH"` | which master holds the agent | lease |
//! | `egw:nodes` | hash | every master seen in the last day → when it was last seen (Unix ms) | — (entries older than a day are removed) |
//! | `egw:node:{name}` | JSON | a live master: load, HTTP address | lease |
//! | `egw:view:{name}` | JSON | the agents a master holds, summarised | lease |
//! | `egw:push:seq` | int | push ids (started at Unix ms × 1000) | — |
//! | `egw:push:{id}` | hash | sender, group, body, len, at, targets (newline-separated), left | deleted once every target acked |
//! | `egw:pending:{uuid}` | list | push ids not yet acked by the agent | — |
//! | `egw:pbytes:{uuid}` | int | body bytes pending for the agent | — |
//!
//! Lua numbers are doubles: ids are formatted with `%.0f` before they
//! name a key (plain concatenation would write `1.7e+15`); they stay below
//! 2^53, exact in a double.
//!
//! Channels: `egw:node:{name}` (to one master: `kick UUID EPOCH`,
//! `push UUID`) and `egw:fanout` (reports for other masters' subscribers).
//!
//! The fencing rule: an owner entry is only ever *created* by a claim,
//! which takes a new epoch from `egw:epoch`, or re-created by its own
//! holder after it expired unclaimed; a refresh only extends an entry
//! that still names the refresher's node and epoch. A master whose entry
//! names someone else is fenced: it closes that session.

/// Channel of one master.
pub fn node_channel(node: &str) -> String {
    format!("egw:node:{node}")
}

/// Key of a live master's record (same name as its channel: one is a key,
/// the other a channel, which Redis keeps apart).
pub fn node_key(node: &str) -> String {
    format!("egw:node:{node}")
}

/// Key of a master's view of its agents.
pub fn view_key(node: &str) -> String {
    format!("egw:view:{node}")
}

/// Channel carrying reports to other masters' subscribers.
pub const FANOUT_CHANNEL: &str = "egw:fanout";

/// Hash of every master seen in the last day: name → last seen, Unix ms.
pub const NODES_KEY: &str = "egw:nodes";

/// Push id counter.
pub const PUSH_SEQ_KEY: &str = "egw:push:seq";

/// Claims an agent for a node: a new epoch, the owner entry set with the
/// lease, and the previous owner (another node) told to close its session.
/// ARGV: uuid, node, lease ms. Returns the epoch.
pub const CLAIM: &str = r"
local k = 'egw:owner:' .. ARGV[1]
local old = redis.call('GET', k)
local epoch = redis.call('INCR', 'egw:epoch')
redis.call('SET', k, ARGV[2] .. ' ' .. string.format('%.0f', epoch), 'PX', ARGV[3])
if old then
  local sp = string.find(old, ' ', 1, true)
  if sp then
    local on = string.sub(old, 1, sp - 1)
    if on ~= ARGV[2] then
      redis.call('PUBLISH', 'egw:node:' .. on, 'kick ' .. ARGV[1] .. ' ' .. string.sub(old, sp + 1))
    end
  end
end
return epoch
";

/// Extends a node's claims and reports which it lost. ARGV: node, lease
/// ms, then uuid, epoch pairs. An entry naming this node and epoch is
/// extended; a missing one (expired while Redis was out of reach, nobody
/// claimed it since) is set again; any other means fenced. Returns two
/// lists: the fenced uuids, and uuid, pending-count pairs of the kept
/// ones that have pushes waiting.
pub const CONFIRM: &str = r"
local fenced = {}
local pending = {}
for i = 3, #ARGV, 2 do
  local u = ARGV[i]
  local mine = ARGV[1] .. ' ' .. ARGV[i + 1]
  local k = 'egw:owner:' .. u
  local cur = redis.call('GET', k)
  if cur == mine then
    redis.call('PEXPIRE', k, ARGV[2])
  elseif not cur then
    redis.call('SET', k, mine, 'PX', ARGV[2])
  else
    table.insert(fenced, u)
  end
  if cur == mine or not cur then
    local n = redis.call('LLEN', 'egw:pending:' .. u)
    if n > 0 then
      table.insert(pending, u)
      table.insert(pending, tostring(n))
    end
  end
end
return {fenced, pending}
";

/// Gives up a claim when the agent leaves, if it is still this node's.
/// ARGV: uuid, node, epoch.
pub const RELEASE: &str = r"
local k = 'egw:owner:' .. ARGV[1]
if redis.call('GET', k) == ARGV[2] .. ' ' .. ARGV[3] then
  redis.call('DEL', k)
  return 1
end
return 0
";

/// Accepts a push for its targets, all or nothing: room checked for every
/// target first (the outbox limits, across the cluster), then the record,
/// the per-target lists, and a note to each target's current master.
/// ARGV: max messages, max bytes, body length, sender, group, body, Unix
/// ms, then the target uuids. Returns {id, "ok"} or {0, reason}.
pub const ACCEPT: &str = r"
local maxm = tonumber(ARGV[1])
local maxb = tonumber(ARGV[2])
local len = tonumber(ARGV[3])
for i = 8, #ARGV do
  local u = ARGV[i]
  if redis.call('LLEN', 'egw:pending:' .. u) >= maxm then
    return {0, 'outbox_messages'}
  end
  local b = tonumber(redis.call('GET', 'egw:pbytes:' .. u) or '0')
  if b + len > maxb then
    return {0, 'outbox_bytes'}
  end
end
local id = string.format('%.0f', redis.call('INCR', 'egw:push:seq'))
local targets = {}
for i = 8, #ARGV do
  table.insert(targets, ARGV[i])
end
redis.call('HSET', 'egw:push:' .. id, 'sender', ARGV[4], 'group', ARGV[5], 'body', ARGV[6],
  'len', ARGV[3], 'left', #ARGV - 7, 'at', ARGV[7], 'targets', table.concat(targets, '\n'))
for i = 8, #ARGV do
  local u = ARGV[i]
  redis.call('RPUSH', 'egw:pending:' .. u, id)
  redis.call('INCRBY', 'egw:pbytes:' .. u, len)
  local o = redis.call('GET', 'egw:owner:' .. u)
  if o then
    local sp = string.find(o, ' ', 1, true)
    if sp then
      redis.call('PUBLISH', 'egw:node:' .. string.sub(o, 1, sp - 1), 'push ' .. u)
    end
  end
end
return {tonumber(id), 'ok'}
";

/// The pushes waiting for one agent, oldest first, with ids above a
/// given one: id, sender, group, body for each (ids whose record is gone
/// are dropped from the list). Ids grow with every push and each list is
/// in id order, so the holder asks only for what is newer than its
/// outbox's newest. ARGV: uuid, most pushes, after this id (0: all).
pub const FETCH: &str = r"
local l = 'egw:pending:' .. ARGV[1]
local after = tonumber(ARGV[3])
local ids = redis.call('LRANGE', l, 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  if tonumber(id) > after then
    local h = redis.call('HMGET', 'egw:push:' .. id, 'sender', 'group', 'body')
    if h[3] then
      table.insert(out, id)
      table.insert(out, h[1] or '')
      table.insert(out, h[2] or '')
      table.insert(out, h[3])
    else
      redis.call('LREM', l, 0, id)
    end
  end
end
return out
";

/// A push's state: when it was accepted, then each target and whether it
/// is still pending (`queued`) or acked (`delivered`). Empty when the
/// record is gone (unknown id, or acked by every target). ARGV: id.
pub const STATUS: &str = r"
local h = redis.call('HMGET', 'egw:push:' .. ARGV[1], 'at', 'targets')
if not h[2] then
  return {}
end
local out = {h[1] or '0'}
for t in string.gmatch(h[2], '[^\n]+') do
  table.insert(out, t)
  if redis.call('LPOS', 'egw:pending:' .. t, ARGV[1]) then
    table.insert(out, 'queued')
  else
    table.insert(out, 'delivered')
  end
end
return out
";

/// Agents acked pushes: each off its agent's list, its bytes given back,
/// the record deleted once every target acked. ARGV: uuid, id pairs.
/// Returns how many were still pending.
pub const ACK: &str = r"
local done = 0
for i = 1, #ARGV, 2 do
  local u = ARGV[i]
  local id = ARGV[i + 1]
  if redis.call('LREM', 'egw:pending:' .. u, 0, id) > 0 then
    done = done + 1
    local k = 'egw:push:' .. id
    local len = tonumber(redis.call('HGET', k, 'len') or '0')
    if redis.call('DECRBY', 'egw:pbytes:' .. u, len) <= 0 then
      redis.call('DEL', 'egw:pbytes:' .. u)
    end
    if redis.call('HINCRBY', k, 'left', -1) <= 0 then
      redis.call('DEL', k)
    end
  end
end
return done
";
