-- Park a received message whose ETA is in the future: out of the unacked records
-- (so no visibility timeout can redeliver it) and into a sorted set scored by its
-- ETA, in Redis rather than in the worker's memory.
-- KEYS[1] unacked_index KEYS[2] unacked KEYS[3] owner hash KEYS[4] delayed zset
-- KEYS[5] delayed payloads hash KEYS[6] delayed targets hash
-- ARGV[1] tag ARGV[2] eta (seconds) ARGV[3] item ARGV[4] target queue key
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[6], ARGV[1], ARGV[4])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
