-- klua.worker.lru (internal): the in-memory de-duplication store, an LRU of `n` ids with
-- :has(id) (refreshes the id) and :add(id). A worker keeps it as w.seen; a store of the same
-- shape (:has, :add, and an optional :close called by the drain) can take its place.
local Lru = {}
local LruI = {}  -- internals, off the metatable
Lru.__index = Lru

local function unlink(node) node.prev.next, node.next.prev = node.next, node.prev end

function LruI.front(self, node)
  local h = self.head
  node.prev, node.next = h, h.next
  h.next.prev = node
  h.next = node
end

function Lru:has(id)
  local node = self.map[id]
  if not node then return false end
  unlink(node); LruI.front(self, node)
  return true
end

function Lru:add(id)
  if self:has(id) then return end
  local node = { id = id }
  self.map[id] = node
  LruI.front(self, node)
  self.size = self.size + 1
  if self.size > self.n then
    local last = self.head.prev
    unlink(last)
    self.map[last.id] = nil
    self.size = self.size - 1
  end
end

return function(n)
  local head = {}
  head.prev, head.next = head, head
  return setmetatable({ n = n, size = 0, map = {}, head = head }, Lru)
end
