-- Record one message taken with BRPOP as unacknowledged (see claim.lua).
-- KEYS[1] unacked_index  KEYS[2] unacked  KEYS[3] owner hash  KEYS[4] dead-letter list
-- ARGV[1] item  ARGV[2] now  ARGV[3] consumer id  ARGV[4] queue key
-- Returns the delivery tag, or '' when the item is not a kombu envelope (it is dead-lettered).
local item = ARGV[1]
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
if not tag then
  redis.call('LPUSH', KEYS[4], cjson.encode({queue = ARGV[4], reason = 'malformed envelope', time = ARGV[2], raw = item}))
  return ''
end
redis.call('ZADD', KEYS[1], ARGV[2], tag)
redis.call('HSET', KEYS[2], tag, '[' .. item .. ',' .. cjson.encode(ex) .. ',' .. cjson.encode(rk) .. ']')
redis.call('HSET', KEYS[3], tag, ARGV[3])
return tag
