-- Move parked messages whose ETA has come back onto the consuming end of their queue.
-- KEYS[1] delayed zset KEYS[2] payloads hash KEYS[3] targets hash
-- ARGV[1] now ARGV[2] limit
-- Returns how many moved, and the earliest remaining ETA (or '').
local tags = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, tag in ipairs(tags) do
  local payload = redis.call('HGET', KEYS[2], tag)
  local target = redis.call('HGET', KEYS[3], tag)
  if payload and target then
    redis.call('RPUSH', target, payload)
  end
  redis.call('ZREM', KEYS[1], tag)
  redis.call('HDEL', KEYS[2], tag)
  redis.call('HDEL', KEYS[3], tag)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#tags, nxt[2] or ''}
