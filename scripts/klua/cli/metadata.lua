-- klua metadata [TOPIC...] [--json]: kcat -L's job. The cluster's brokers and controller, and its topics
-- (or the ones named) with their partitions' leaders, replicas and in-sync replicas.
local common = require("klua.cli.common")
local util = require("klua.cli.admin_util")
local M = {}
local USAGE = [[
usage: klua metadata [TOPIC...] [--json]
  the cluster id, brokers (the controller marked), and every topic (internal ones too) or the TOPICs named,
  with per partition the leader, replicas and in-sync replicas (ISR)
  --json   one JSON document: {cluster_id, controller_id, brokers = [{id, host, port, rack}],
           topics = [{name, topic_id, internal, partitions = [{partition, leader, replicas, isr}], error}]}
exit: 0 ok, 2 usage, 3 a Kafka error (an unknown TOPIC: the others are still printed)
]]

function M.main(...)
  local opts, names = common.parse({ ... }, { ["--json"] = "flag" }, USAGE)
  local admin = klua.admin()
  local cluster, err = admin:describe_cluster()
  if not cluster then common.fail(err) end
  if #names == 0 then
    local list, lerr = admin:list_topics{ internal = true }
    if not list then common.fail(lerr) end
    for i, t in ipairs(list) do names[i] = t.name end
  end
  local topics = {}
  if #names > 0 then
    local derr
    topics, derr = admin:describe_topics(names, { configs = false })
    if not topics then common.fail(derr) end
  end
  local failed = false
  for _, t in ipairs(topics) do
    if t.error then failed = util.report("topic \"" .. t.name .. "\"", t.error) or failed end
  end
  if opts.json then
    local brokers, out = {}, {}
    for i, b in ipairs(cluster.brokers) do brokers[i] = { id = b.id, host = b.host, port = b.port, rack = b.rack } end
    for i, t in ipairs(topics) do
      out[i] = { name = t.name, topic_id = t.topic_id, internal = t.internal or false,
                 partitions = util.partitions_json(t.partitions), error = util.error_json(t.error) }
    end
    common.json_line{ cluster_id = cluster.cluster_id, controller_id = cluster.controller_id,
                      brokers = klua.json.array(brokers), topics = klua.json.array(out) }
  else
    print(("cluster %s"):format(tostring(cluster.cluster_id)))
    print(("%d broker%s:"):format(#cluster.brokers, #cluster.brokers == 1 and "" or "s"))
    for _, b in ipairs(cluster.brokers) do
      print(("  broker %d at %s:%d%s%s"):format(b.id, b.host, b.port, b.rack and (" rack " .. b.rack) or "",
        b.id == cluster.controller_id and " (controller)" or ""))
    end
    local ok = 0
    for _, t in ipairs(topics) do if not t.error then ok = ok + 1 end end
    print(("%d topic%s:"):format(ok, ok == 1 and "" or "s"))
    for _, t in ipairs(topics) do
      if not t.error then
        print(("  topic \"%s\" with %d partition%s:%s"):format(t.name, #t.partitions, #t.partitions == 1 and "" or "s",
          t.internal and " (internal)" or ""))
        for _, p in ipairs(t.partitions) do
          print(("    partition %d, leader %d, replicas: %s, isrs: %s"):format(p.partition, p.leader,
            util.ids(p.replicas), util.ids(p.isr)))
        end
      end
    end
  end
  if failed then klua.exit(3) end
end

return M
