-- Store a task state (and PUBLISH it, as Celery's backend does) unless a SUCCESS is
-- already stored: a duplicate run's late RETRY/FAILURE/STARTED must not undo it.
-- Celery checks this with a separate read before every write; here it is atomic.
-- KEYS[1] celery-task-meta-<id>   ARGV[1] value   ARGV[2] ttl in seconds (0: none)
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then
    return 0
  end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
