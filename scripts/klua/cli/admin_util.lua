-- Shared by the admin one-liners (topic, group, offsets, metadata, lag): subcommands, errors in JSON,
-- and whether a group exists.
local common = require("klua.cli.common")
local M = {}

-- Runs subs[args[1]](rest of args...); a missing or unknown subcommand exits 2 naming the valid ones
-- (order: the list of names, as the usage shows them).
function M.dispatch(usage, what, order, subs, args)
  local name = args[1]
  if name == "-h" or name == "--help" then
    io.stdout:write(usage)
    klua.exit(0)
  end
  local list = table.concat(order, ", ")
  if name == nil then common.usage_error(usage, what .. " needs a subcommand: " .. list) end
  local fn = subs[name]
  if not fn then
    local near = common.nearest(name, order)
    common.usage_error(usage, ("unknown subcommand '%s' of klua %s (%s)"):format(name, what,
      near and ("did you mean '" .. near .. "'?") or ("expected: " .. list)))
  end
  return fn(select(2, unpack(args)))
end

-- Refuses positional arguments beyond the n a subcommand takes.
function M.no_extra(usage, pos, n, what)
  if #pos > n then common.usage_error(usage, ("unexpected argument '%s' to %s"):format(pos[n + 1], what)) end
end

-- An error as JSON: {name, code, message} (the stable part of a klua error).
function M.error_json(err)
  if err == nil then return nil end
  if type(err) ~= "table" then return { name = "KLUA_ERROR", code = -1, message = tostring(err) } end
  return { name = err.name, code = err.code, message = err.message }
end

-- Prints one item's error to stderr (klua: WHAT: error) and returns true when there was one.
function M.report(what, err)
  if err == nil then return false end
  io.stderr:write("klua: ", what, ": ", tostring(err), "\n")
  return true
end

-- nil when the group exists (the cluster describes it, or it has committed offsets), else an error naming
-- it (GROUP_ID_NOT_FOUND); nil, err when asking failed. The embedded cluster serves no DescribeGroups:
-- there a group exists when it has committed offsets.
function M.missing_group(admin, group)
  local d, err = admin:describe_groups({ group })
  if d then
    local g = d[1]
    if not g.error then return nil end
    if g.error.name ~= klua.errors.GROUP_ID_NOT_FOUND then return nil, g.error end
  elseif err.name ~= klua.errors.KLUA_EMBEDDED_UNSUPPORTED then
    return nil, err
  end
  local offsets, oerr = admin:list_group_offsets(group)
  if not offsets then return nil, oerr end
  if #offsets > 0 then return nil end
  return klua.errors.new{ name = klua.errors.GROUP_ID_NOT_FOUND, kafka = true,
    message = ("group \"%s\" does not exist (it has no committed offsets and the cluster does not know it)"):format(group) }
end

-- "1,2,3" for a list of numbers, "-" for none.
function M.ids(list)
  if not list or #list == 0 then return "-" end
  local out = {}
  for i, v in ipairs(list) do out[i] = ("%d"):format(v) end
  return table.concat(out, ",")
end

-- A topic's partitions in the --json shape of topic describe and metadata:
-- [{partition, leader, replicas, isr}].
function M.partitions_json(partitions)
  local out = {}
  for i, p in ipairs(partitions or {}) do
    out[i] = { partition = p.partition, leader = p.leader, replicas = klua.json.array(p.replicas),
               isr = klua.json.array(p.isr) }
  end
  return klua.json.array(out)
end

return M
