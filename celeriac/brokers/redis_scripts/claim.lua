-- Take up to ARGV[1] messages from the queue lists, in the order given, and record
-- each as unacknowledged in the same step, so no message is ever held only in a
-- consumer's memory. The record is kombu's (unacked hash + unacked_index zset),
-- so Celery workers and celeriac workers can restore each other's messages.
--
-- KEYS[1] unacked_index   KEYS[2] unacked   KEYS[3] celeriac owner hash
-- KEYS[4] celeriac dead-letter list          KEYS[5..] queue lists, in priority order
-- ARGV[1] max messages    ARGV[2] now (seconds)   ARGV[3] consumer id
-- Returns a flat list: key, delivery tag ('' when the item is not a kombu envelope), item, ...
local out = {}
local taken = 0
local max = tonumber(ARGV[1])
for i = 5, #KEYS do
  while taken < max do
    local item = redis.call('RPOP', KEYS[i])
    if not item then break end
    local ok, msg = pcall(cjson.decode, item)
    local tag, ex, rk = nil, '', ''
    if ok and type(msg) == 'table' and type(msg['properties']) == 'table' then
      local props = msg['properties']
      if type(props['delivery_tag']) == 'string' then tag = props['delivery_tag'] end
      local di = props['delivery_info']
      if type(di) == 'table' then
        if type(di['exchange']) == 'string' then ex = di['exchange'] end
        if type(di['routing_key']) == 'string' then rk = di['routing_key'] end
      end
    end
    if tag then
      redis.call('ZADD', KEYS[1], ARGV[2], tag)
      redis.call('HSET', KEYS[2], tag, '[' .. item .. ',' .. cjson.encode(ex) .. ',' .. cjson.encode(rk) .. ']')
      redis.call('HSET', KEYS[3], tag, ARGV[3])
      out[#out + 1] = KEYS[i]
      out[#out + 1] = tag
    else
      -- Not an envelope anyone can process: keep it aside, intact, and report it.
      redis.call('LPUSH', KEYS[4], cjson.encode({queue = KEYS[i], reason = 'malformed envelope', time = ARGV[2], raw = item}))
      out[#out + 1] = KEYS[i]
      out[#out + 1] = ''
    end
    out[#out + 1] = item
    taken = taken + 1
  end
  if taken >= max then break end
end
return out
