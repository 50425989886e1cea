// The consumer's group membership: subscribe or assign, and rebalances. librdkafka's rebalance
// events are answered in order; each hook (on_assign, on_revoke, on_lost) runs as a task,
// bounded by hook_timeout_ms, and the (incremental) assign or unassign follows when it ends.
#include <fmt/format.h>
#include <regex.h>

#include "bindings/lua_chunks.hpp"
#include "host/log.hpp"
#include "bindings/consumer.hpp"

namespace klua {
namespace consumer_impl {

void Consumer::forward_partitions(const rd_kafka_topic_partition_list_t* parts) {
  for (int i = 0; parts && i < parts->cnt; ++i) {
    if (rd_kafka_queue_t* pq = rd_kafka_queue_get_partition(rk_, parts->elems[i].topic, parts->elems[i].partition)) {
      rd_kafka_queue_forward(pq, msg_queue_);
      rd_kafka_queue_destroy(pq);
    }
  }
  // What was fetched before the forward went to the events queue (see drain()), and items
  // forwarded onto a non-empty queue do not signal the fd.
  if (rd_kafka_queue_length(msg_queue_) > 0 && !poll_waiters.empty()) msg_watcher_->schedule();
}

void Consumer::handle_rebalance(rd_kafka_event_t* ev) {
  rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
  PendingRebalance p;
  p.parts = rd_kafka_topic_partition_list_copy(rd_kafka_event_topic_partition_list(ev));
  rd_kafka_topic_partition_list_sort(p.parts, nullptr, nullptr);
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    p.kind = Rebalance::Assign;
  } else {
    p.kind = rd_kafka_assignment_lost(rk_) ? Rebalance::Lost : Rebalance::Revoke;
    // From now on nothing of these partitions reaches the script.
    drop_held(p.parts);
    for (int i = 0; i < p.parts->cnt; ++i) revoking_.insert({p.parts->elems[i].topic, p.parts->elems[i].partition});
  }
  pending_.push_back(p);
  if (!rebalance_running_) start_rebalance();
}

// done([partitions]): the hook ended; what on_assign returned sets the offsets the assigned
// partitions start at (numbers, "beginning" or "end"; partitions left out, or with no offset,
// start at the group's committed offset or auto.offset.reset, as without it).
int hook_done(lua_State* L) {
  auto* link = static_cast<ConsumerLink*>(lua_touserdata(L, lua_upvalueindex(1)));
  Consumer* c = link->c;
  if (!c || lua_tonumber(L, lua_upvalueindex(2)) != c->hook_gen) return 0;  // answered already
  c->hook_thread = nullptr;
  std::string bad;
  if (lua_istable(L, 1)) {
    int n = static_cast<int>(lua_objlen(L, 1));
    for (int i = 1; i <= n && bad.empty(); ++i) {
      lua_rawgeti(L, 1, i);
      if (!lua_istable(L, -1)) {
        bad = fmt::format("item {} is a {}, not a partition", i, luaL_typename(L, -1));
      } else {
        lua_getfield(L, -1, "topic");
        lua_getfield(L, -2, "partition");
        lua_getfield(L, -3, "offset");
        int64_t offset = RD_KAFKA_OFFSET_INVALID;
        if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 0)
          offset = static_cast<int64_t>(lua_tonumber(L, -1));
        else if (lua_type(L, -1) == LUA_TSTRING && std::strcmp(lua_tostring(L, -1), "beginning") == 0)
          offset = RD_KAFKA_OFFSET_BEGINNING;
        else if (lua_type(L, -1) == LUA_TSTRING && std::strcmp(lua_tostring(L, -1), "end") == 0)
          offset = RD_KAFKA_OFFSET_END;
        else if (!lua_isnil(L, -1))
          bad = fmt::format("item {}: offset must be a number >= 0, \"beginning\" or \"end\"", i);
        if (lua_type(L, -3) != LUA_TSTRING || lua_type(L, -2) != LUA_TNUMBER)
          bad = fmt::format("item {}: topic (a string) and partition (a number) expected", i);
        if (bad.empty() && offset != RD_KAFKA_OFFSET_INVALID)
          c->assign_offsets[{lua_tostring(L, -3), static_cast<int32_t>(lua_tonumber(L, -2))}] = offset;
        lua_pop(L, 3);
      }
      lua_pop(L, 1);
    }
  }
  if (!bad.empty()) c->assign_offsets.clear();
  c->finish_rebalance();
  if (!bad.empty()) return luaL_error(L, "on_assign returned a bad partition list (%s): starting as without it", bad.c_str());
  return 0;
}

// enter(): the hook task has started; its coroutine is the one c:close() must not make wait.
static int hook_enter(lua_State* L) {
  auto* link = static_cast<ConsumerLink*>(lua_touserdata(L, lua_upvalueindex(1)));
  if (link->c) link->c->hook_thread = L;
  return 0;
}

void Consumer::start_rebalance() {
  if (pending_.empty()) return;
  rebalance_running_ = true;
  PendingRebalance& p = pending_.front();
  int hook = p.kind == Rebalance::Assign ? on_assign_ : p.kind == Rebalance::Revoke ? on_revoke_
             : (on_lost_ != LUA_NOREF ? on_lost_ : on_revoke_);
  // Hooks need the loop to run tasks: at exit (and for an empty list) answer at once.
  if (hook == LUA_NOREF || rt_.exiting()) {
    finish_rebalance();
    return;
  }
  lua_State* L = rt_.lua();
  load_binding_chunk(L, "consumer_hook");  // bindings/lua/consumer_hook.lua
  lua_rawgeti(L, LUA_REGISTRYINDEX, hook);
  push_partition_list(L, p.parts);
  lua_rawgeti(L, LUA_REGISTRYINDEX, link_ref_);
  lua_pushnumber(L, ++hook_gen);
  lua_pushcclosure(L, hook_done, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, link_ref_);
  lua_pushcclosure(L, hook_enter, 1);
  hook_thread = nullptr;
  rebalance_task_ = rt_.scheduler().spawn(L, 4);
  // A hook that never ends would stall the whole group: bound it (from now, not from the loop's
  // cached time, which a long run of buffered messages leaves behind).
  uv_update_time(rt_.loop());
  uv_timer_start(hook_timer_, [](uv_timer_t* h) {
    auto* self = static_cast<Consumer*>(h->data);
    if (!self->rebalance_running_) return;
    log::diagnostic(log::Level::warn,
                    fmt::format("consumer group {}: rebalance hook did not finish within {} ms; cancelling it",
                                self->group_, self->hook_timeout_ms_),
                    {{"client", rd_kafka_name(self->rk_)}, {"group", self->group_}});
    self->rt_.scheduler().cancel(self->rebalance_task_);
    self->finish_rebalance();
  }, static_cast<uint64_t>(timeout_int(hook_timeout_ms_)), 0);
}

void Consumer::finish_rebalance() {
  if (!rebalance_running_ || pending_.empty()) {
    assign_offsets.clear();  // from a hook that ended too late
    return;
  }
  uv_timer_stop(hook_timer_);
  PendingRebalance p = pending_.front();
  pending_.pop_front();
  rebalance_running_ = false;
  if (rk_) {
    // COOPERATIVE for cooperative-sticky and for KIP-848 (whose events carry only the change);
    // EAGER hands over and takes back the whole assignment each time.
    bool cooperative = kip848;
    if (!cooperative) {  // asks librdkafka's main thread: only when the protocol leaves it open
      const char* protocol = rd_kafka_rebalance_protocol(rk_);
      cooperative = protocol && std::strcmp(protocol, "COOPERATIVE") == 0;
    }
    if (p.kind == Rebalance::Assign) {
      if (!cooperative) assigned_start.clear();
      for (int i = 0; i < p.parts->cnt; ++i) {
        rd_kafka_topic_partition_t& e = p.parts->elems[i];
        revoking_.erase({e.topic, e.partition});
        // Where on_assign said, else at the group's committed offset or auto.offset.reset.
        auto set = assign_offsets.find({e.topic, e.partition});
        if (set != assign_offsets.end()) e.offset = set->second;
        assigned_start[{e.topic, e.partition}] = e.offset >= 0 ? e.offset : -1;
      }
      if (cooperative) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_assign(rk_, p.parts)) rd_kafka_error_destroy(e);
      } else {
        rd_kafka_assign(rk_, p.parts);
      }
      forward_partitions(p.parts);
    } else {
      // Processed (stored) offsets are committed before the partitions go: librdkafka does it
      // on unassign with auto-commit; without it, commit them here first.
      if (!auto_commit_ && p.kind == Rebalance::Revoke) rd_kafka_commit(rk_, nullptr, 1);
      if (cooperative) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk_, p.parts)) rd_kafka_error_destroy(e);
      } else {
        rd_kafka_assign(rk_, nullptr);
      }
      for (int i = 0; i < p.parts->cnt; ++i) {
        revoking_.erase({p.parts->elems[i].topic, p.parts->elems[i].partition});
        assigned_start.erase({p.parts->elems[i].topic, p.parts->elems[i].partition});
      }
      if (!cooperative) assigned_start.clear();
    }
    progress_changed(p.parts);
    // An eager assign replaces the whole assignment.
    lag_assignment_changed(p.kind == Rebalance::Assign && !cooperative ? nullptr : p.parts);
    // Built-in metrics: the rebalance is done; an assignment (possibly empty) makes the
    // consumer ready (the "consumers" readiness check).
    ++metrics_->rebalances[static_cast<int>(p.kind)];
    if (p.kind == Rebalance::Assign) metrics_->has_assignment = true;
  }
  rd_kafka_topic_partition_list_destroy(p.parts);
  assign_offsets.clear();
  if (!pending_.empty()) {
    start_rebalance();
  } else if (state_ == Closing) {
    watcher_->schedule();
  }
}

// A subscription pattern librdkafka would refuse: its rd_regex_comp is regcomp(REG_EXTENDED |
// REG_NOSUB) where the C library has regcomp (klua's librdkafka build links libc's), so the same
// call here refuses exactly the patterns rd_kafka_subscribe would, before it is made.
static std::string regex_problem(const std::string& pattern) {
  regex_t re;
  int rc = regcomp(&re, pattern.c_str(), REG_EXTENDED | REG_NOSUB);
  if (rc == 0) {
    regfree(&re);
    return {};
  }
  char why[256];
  regerror(rc, &re, why, sizeof why);
  return fmt::format("invalid regular expression: {} (a topic name starting with ^ is a POSIX extended regex)", why);
}

std::vector<std::string> topic_list(lua_State* L, int idx, const char* fn, int arg, const char* field) {
  std::string in = field ? fmt::format("{}: ", field) : std::string();
  std::vector<std::string> topics;
  if (lua_type(L, idx) == LUA_TSTRING) {
    topics.emplace_back(lua_tostring(L, idx));
  } else if (lua_istable(L, idx)) {
    int n = static_cast<int>(lua_objlen(L, idx));
    for (int i = 1; i <= n; ++i) {
      lua_rawgeti(L, idx, i);
      if (lua_type(L, -1) != LUA_TSTRING)
        raise_bad_argument(L, arg, fn, fmt::format("{}topics[{}] must be a string, got {}", in, i, luaL_typename(L, -1)));
      topics.emplace_back(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else {
    raise_bad_argument(L, arg, fn, fmt::format("{}expected a topic name or a list of topic names (a name starting "
                                               "with ^ is a regex), got {}", in, luaL_typename(L, idx)));
  }
  for (const auto& t : topics) {
    std::string problem = t[0] == '^' ? regex_problem(t) : topic_name_problem(t.data(), t.size());
    if (!problem.empty()) {
      ErrorSpec e;
      e.code = CODE_INVALID_ARGUMENT;
      e.name = ERR_INVALID_ARGUMENT;
      e.topic = t;
      e.message = t[0] == '^' ? fmt::format("bad argument #{} to '{}' ({}\"{}\": {})", arg, fn, in, t, problem)
                              : fmt::format("bad argument #{} to '{}' ({}invalid topic name \"{}\": {})", arg, fn, in, t, problem);
      e.where = user_location(L);
      raise_error(L, e);
    }
  }
  return topics;
}

int subscribe(lua_State* L, Consumer* c, const std::vector<std::string>& topics) {
  auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(topics.size()));
  for (const auto& t : topics) rd_kafka_topic_partition_list_add(list, t.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk(), list);
  rd_kafka_topic_partition_list_destroy(list);
  c->missing_topic.reset();
  if (err == RD_KAFKA_RESP_ERR__INVALID_ARG) {
    // librdkafka says only "Invalid argument or configuration": name the pattern it refused
    // (its regex engine is POSIX extended; a pattern regcomp refuses is the culprit).
    std::string bad;
    for (const auto& t : topics) {
      if (t.empty() || t[0] != '^') continue;
      regex_t re;
      if (regcomp(&re, t.c_str(), REG_EXTENDED | REG_NOSUB) != 0) {
        bad += (bad.empty() ? "\"" : ", \"") + t + "\"";
        continue;
      }
      regfree(&re);
    }
    ErrorSpec e = consumer_error(c, err, "subscribe");
    e.message = bad.empty() ? fmt::format("subscription refused: {}", rd_kafka_err2str(err))
                            : fmt::format("invalid regular expression {} in the subscription (a topic name starting "
                                          "with ^ is a POSIX extended regex)", bad);
    return nil_error(L, e);
  }
  if (err) return nil_error(L, consumer_error(c, err, "subscribe"));
  c->metrics()->wants_assignment = true;  // ready once the group has answered (readiness)
  if (c->kip848) c->check_topics_exist(topics);
  lua_pushboolean(L, 1);
  return 1;
}

// c:subscribe(topics): a list of names; names starting with ^ are regular expressions.
int l_subscribe(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:subscribe");
  return subscribe(L, c, topic_list(L, 2, "c:subscribe", 2, nullptr));
}

int l_unsubscribe(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:unsubscribe");
  rd_kafka_resp_err_t err = rd_kafka_unsubscribe(c->rk());
  if (err) return nil_error(L, consumer_error(c, err, "unsubscribe"));
  c->metrics()->wants_assignment = c->metrics()->has_assignment = false;
  lua_pushboolean(L, 1);
  return 1;
}

// After an unassign of the partitions of `old`: returns when each one's fetcher stop has been
// answered to librdkafka's main thread. A seek to "stored" is the barrier: it goes to the same
// partition queue as the stop, after it; with nothing assigned it finds every partition stopping
// or stopped and librdkafka refuses it, moving nothing (a seek of a started partition would
// move it, or outdate its fetches). When its answer arrives, the stop's answer is on the main
// thread's queue, ahead of anything the next assign sends there. A timeout (a broker thread
// stuck) only gives the protection up.
static void settle_stops(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* old) {
  for (int i = 0; i < old->cnt; ++i) old->elems[i].offset = RD_KAFKA_OFFSET_STORED;
  if (rd_kafka_error_t* e = rd_kafka_seek_partitions(rk, old, 2000)) rd_kafka_error_destroy(e);
}

// Gives `list` (null: nothing) after the old assignment was taken away (had) or when there was
// none, and keeps klua's record of it.
static rd_kafka_resp_err_t give_assignment(Consumer* c, rd_kafka_topic_partition_list_t* list, bool had) {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (list || !had) err = rd_kafka_assign(c->rk(), list);
  if (err) return err;
  c->forward_partitions(list);
  c->assigned_start.clear();
  c->skip_below_.clear();
  for (int i = 0; list && i < list->cnt; ++i) {
    c->assigned_start[{list->elems[i].topic, list->elems[i].partition}] =
        list->elems[i].offset >= 0 ? list->elems[i].offset : -1;
    if (list->elems[i].offset > 0) c->skip_below_[{list->elems[i].topic, list->elems[i].partition}] = list->elems[i].offset;
  }
  c->progress_changed(nullptr);
  c->lag_assignment_changed(nullptr);
  // An explicit assignment needs no group: the consumer is ready at once (c:assign() clears it).
  c->metrics()->wants_assignment = c->metrics()->has_assignment = list != nullptr;
  return err;
}

// Resumes a waiting c:assign with true or nil, err (nothing when its task stopped waiting).
static void wake_assign(Consumer* c, WaitToken tok, rd_kafka_resp_err_t err) {
  Scheduler& s = c->runtime().scheduler();
  lua_State* co = s.wake_begin(tok);
  if (!co) return;
  if (err) {
    ErrorSpec e = consumer_error(c, err, "assign");
    if (err == RD_KAFKA_RESP_ERR__DESTROY) e.message = "the consumer was closed before the assignment was given";
    s.wake_end(tok, nil_error(co, e));
    return;
  }
  lua_pushboolean(co, 1);
  s.wake_end(tok, 1);
}

static void settle_then_give(Consumer* c, rd_kafka_topic_partition_list_t* old);

// On the loop, no c:assign running: serves the queued calls in order, until one must wait for
// stops again (or the queue is empty). Their tasks are suspended, so they may be woken at once.
static void next_assign(Consumer* c) {
  while (!c->assign_queue.empty() && !c->assign_running) {
    Consumer::PendingAssign& front = c->assign_queue.front();
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_t* old = nullptr;
    bool had = false;
    if (c->state() != KafkaHandle::Open) {
      err = RD_KAFKA_RESP_ERR__DESTROY;
    } else {
      c->drop_held(nullptr);
      if (rd_kafka_assignment(c->rk(), &old) != RD_KAFKA_RESP_ERR_NO_ERROR) old = nullptr;
      had = old && old->cnt > 0;
      if (had) {
        err = rd_kafka_assign(c->rk(), nullptr);
        if (!err) {
          settle_then_give(c, old);  // the front is given when the stops are counted
          return;
        }
      }
    }
    if (old) rd_kafka_topic_partition_list_destroy(old);
    if (!err) err = give_assignment(c, front.list, had);
    if (front.list) rd_kafka_topic_partition_list_destroy(front.list);
    WaitToken tok = front.tok;
    c->assign_queue.pop_front();
    wake_assign(c, tok, err);
  }
}

// The old assignment was taken away: its stops are settled on the executor (settle_stops blocks
// for up to 2 s), then the front of the queue is given, on the loop.
static void settle_then_give(Consumer* c, rd_kafka_topic_partition_list_t* old) {
  c->assign_running = true;
  rd_kafka_t* rk = c->rk();
  c->run_off_loop(
      [rk, old] {
        settle_stops(rk, old);
        rd_kafka_topic_partition_list_destroy(old);
      },
      [c] {
        c->assign_running = false;
        Consumer::PendingAssign front = c->assign_queue.front();
        c->assign_queue.pop_front();
        rd_kafka_resp_err_t err =
            c->state() == KafkaHandle::Open ? give_assignment(c, front.list, true) : RD_KAFKA_RESP_ERR__DESTROY;
        if (front.list) rd_kafka_topic_partition_list_destroy(front.list);
        wake_assign(c, front.tok, err);
        next_assign(c);
      });
}

// c:assign(partitions): explicit partitions (with optional offsets), no group rebalancing.
//
// rd_kafka_assign stops the fetcher of every partition of the old assignment; the stop is
// answered asynchronously (a broker thread stops it, the main thread then counts it). Removing a
// partition again before that answer was counted stops it twice and librdkafka aborts
// (rd_kafka_assignment_partition_stopped: Assertion 'rktp->rktp_started' failed), which a loop
// of assigns did. No public call says the stop was counted, so the old assignment is taken away
// first and the new one given once its stops are counted (settle_stops, on the executor: the
// calling task waits, the loop does not). With nothing assigned before (and no c:assign in
// progress) the assignment is given at once, without waiting. Calls made while one is in
// progress wait behind it, in order.
int l_assign(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:assign");
  bool queued = c->assign_running || !c->assign_queue.empty();
  bool had = queued;
  if (!queued) {
    rd_kafka_topic_partition_list_t* old = nullptr;
    if (rd_kafka_assignment(c->rk(), &old) != RD_KAFKA_RESP_ERR_NO_ERROR) old = nullptr;
    had = old && old->cnt > 0;
    if (old) rd_kafka_topic_partition_list_destroy(old);
  }
  if (had) check_can_wait(L, "c:assign");  // raises before anything is allocated
  rd_kafka_topic_partition_list_t* list = lua_isnoneornil(L, 2) ? nullptr : check_partition_list(L, 2, "c:assign", false);
  if (list)
    for (int i = 0; i < list->cnt; ++i)
      if (list->elems[i].offset == RD_KAFKA_OFFSET_INVALID) list->elems[i].offset = RD_KAFKA_OFFSET_STORED;
  if (!had) {
    c->drop_held(nullptr);
    rd_kafka_resp_err_t err = give_assignment(c, list, false);
    if (list) rd_kafka_topic_partition_list_destroy(list);
    if (err) return nil_error(L, consumer_error(c, err, "assign"));
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!queued) {
    // Taken away now, so that nothing of the old assignment is handed out from here on; a
    // failure is this call's answer.
    c->drop_held(nullptr);
    rd_kafka_topic_partition_list_t* old = nullptr;
    if (rd_kafka_assignment(c->rk(), &old) != RD_KAFKA_RESP_ERR_NO_ERROR) old = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk(), nullptr);
    if (err || !old) {
      if (old) rd_kafka_topic_partition_list_destroy(old);
      if (list) rd_kafka_topic_partition_list_destroy(list);
      if (!err) err = RD_KAFKA_RESP_ERR__STATE;
      return nil_error(L, consumer_error(c, err, "assign"));
    }
    c->assign_queue.push_back({list, Runtime::from(L).scheduler().prepare_wait(L, "c:assign", -1)});
    settle_then_give(c, old);
  } else {
    c->assign_queue.push_back({list, Runtime::from(L).scheduler().prepare_wait(L, "c:assign", -1)});
  }
  return lua_yield(L, 0);
}

int l_assignment(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:assignment");
  rd_kafka_topic_partition_list_t* parts = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk(), &parts);
  return return_partitions_or_error(L, c, err, parts, "assignment");
}

}  // namespace consumer_impl
}  // namespace klua
