// The consumer's offsets and positions: store and commit of processed messages, seek, pause and
// resume, positions as the script sees them, committed offsets, watermarks, offsets for times.
#include <fmt/format.h>

#include "bindings/deprecation.hpp"
#include "bindings/consumer.hpp"

namespace klua {
namespace consumer_impl {

// Every commit result comes here: c:commit's (sync, with its waiting task, and async), the
// auto-commits and the commits before a revoke (these two carry no CommitWait).
void Consumer::handle_commit(rd_kafka_event_t* ev) {
  auto* cw = static_cast<CommitWait*>(rd_kafka_event_opaque(ev));
  std::unique_ptr<CommitWait> owned(cw);
  count_commit(ev, cw);
  if (!cw || !cw->tok) return;
  Scheduler& s = rt_.scheduler();
  lua_State* co = s.wake_begin(cw->tok);
  if (!co) return;
  rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) err = RD_KAFKA_RESP_ERR_NO_ERROR;  // nothing to commit
  if (!err) {
    if (const rd_kafka_topic_partition_list_t* l = rd_kafka_event_topic_partition_list(ev)) {
      for (int i = 0; i < l->cnt; ++i) {
        if (l->elems[i].err) {
          ErrorSpec e = kafka_error(l->elems[i].err);
          e.topic = l->elems[i].topic;
          e.partition = l->elems[i].partition;
          e.group = group_;
          e.op = "commit";
          nil_error(co, e);
          s.wake_end(cw->tok, 2);
          return;
        }
      }
    }
    lua_pushboolean(co, 1);
    s.wake_end(cw->tok, 1);
    return;
  }
  ErrorSpec e = kafka_error(err, rd_kafka_event_error_string(ev));
  e.group = group_;
  e.op = "commit";
  nil_error(co, e);
  s.wake_end(cw->tok, 2);
}

// Built-in metrics of a commit result: a success (offsets were committed), a failure by its
// code (the request's, else the first partition's), nothing for _NO_OFFSET (nothing was stored
// to commit: an auto-commit finds that every interval). Latency only for klua's own requests.
void Consumer::count_commit(rd_kafka_event_t* ev, const CommitWait* cw) {
  rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
  if (!err)
    if (const rd_kafka_topic_partition_list_t* l = rd_kafka_event_topic_partition_list(ev))
      for (int i = 0; i < l->cnt && !err; ++i) err = l->elems[i].err;
  client_metrics::ClientMetrics& m = *metrics_;
  if (err) {
    ++m.commit_failures[err];
    return;
  }
  ++m.commits;
  lag_committed(rd_kafka_event_topic_partition_list(ev));
  if (cw) m.commit_latency.observe(static_cast<double>(uv_hrtime() - cw->started) / 1e9);
}

// c:store(msg or partitions): marks processed; the offset is committed by the next (auto) commit.
int l_store(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:store");
  auto* list = check_partition_list(L, 2, "c:store", true);
  // A stored offset is the next one to read: a number. Without one ({topic, partition}) or with
  // "beginning"/"end"/"stored", librdkafka would store a logical offset that no commit can use.
  for (int i = 0; i < list->cnt; ++i) {
    if (list->elems[i].offset < 0) {
      rd_kafka_topic_partition_list_destroy(list);
      raise_bad_argument(L, 2, "c:store",
                         fmt::format("partition list item {}: an offset (a whole number >= 0, the next offset to read) "
                                     "is required; pass the message itself to store the offset after it", i + 1));
    }
  }
  rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk(), list);
  for (int i = 0; i < list->cnt; ++i) {
    if (list->elems[i].err) {
      ErrorSpec e = consumer_error(c, list->elems[i].err, "store");
      e.topic = list->elems[i].topic;
      e.partition = list->elems[i].partition;
      e.message = fmt::format("cannot store an offset for {} [{}]: {} (is the partition assigned?)", e.topic,
                              list->elems[i].partition, rd_kafka_err2str(list->elems[i].err));
      rd_kafka_topic_partition_list_destroy(list);
      return nil_error(L, e);
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  if (err) return nil_error(L, consumer_error(c, err, "store"));
  lua_pushboolean(L, 1);
  return 1;
}

// c:commit([msg or partitions], [{async=bool}]) -> true | nil, err
int l_commit(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:commit");
  bool async = false;
  double timeout = DEFAULT_CALL_TIMEOUT_MS;
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pop(L, 1);
      const char* key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : nullptr;
      if (!key || (std::strcmp(key, "async") != 0 && std::strcmp(key, "timeout_ms") != 0))
        raise_bad_argument(L, 3, "c:commit", fmt::format("unknown option '{}' (allowed: async, timeout_ms)",
                                                         key ? key : luaL_typename(L, -1)));
    }
    lua_getfield(L, 3, "async");
    async = lua_toboolean(L, -1);
    lua_getfield(L, 3, "timeout_ms");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER)
        raise_bad_argument(L, 3, "c:commit", fmt::format("timeout_ms must be a number, got {}", luaL_typename(L, -1)));
      timeout = check_timeout_number(L, 3, "c:commit", lua_tonumber(L, -1));
    }
    lua_pop(L, 2);
  } else if (!lua_isnoneornil(L, 3)) {
    raise_bad_argument(L, 3, "c:commit",
                       fmt::format("options table {{async=, timeout_ms=}} expected, got {}", luaL_typename(L, 3)));
  }
  if (async) {
    rd_kafka_topic_partition_list_t* list = lua_isnoneornil(L, 2) ? nullptr : check_partition_list(L, 2, "c:commit", true);
    // Its result comes to the events queue as rd_kafka_commit(async)'s would, with a CommitWait
    // that has no task: handle_commit times it for the commit latency metric.
    auto cw = std::make_unique<Consumer::CommitWait>();
    rd_kafka_queue_t* q = rd_kafka_queue_get_consumer(c->rk());
    rd_kafka_resp_err_t err = rd_kafka_commit_queue(c->rk(), list, q, nullptr, cw.get());
    rd_kafka_queue_destroy(q);
    if (list) rd_kafka_topic_partition_list_destroy(list);
    if (err) return nil_error(L, consumer_error(c, err, "commit"));
    cw.release();
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!lua_isnoneornil(L, 2)) rd_kafka_topic_partition_list_destroy(check_partition_list(L, 2, "c:commit", true));
  Scheduler& s = Runtime::from(L).scheduler();
  WaitToken tok = s.prepare_wait(L, "c:commit", timeout);  // may raise: before anything is allocated
  // Validated above, so building the list again cannot raise now.
  rd_kafka_topic_partition_list_t* list = lua_isnoneornil(L, 2) ? nullptr : check_partition_list(L, 2, "c:commit", true);
  auto cw = std::make_unique<Consumer::CommitWait>();
  cw->tok = tok;
  rd_kafka_queue_t* q = rd_kafka_queue_get_consumer(c->rk());
  rd_kafka_resp_err_t err = rd_kafka_commit_queue(c->rk(), list, q, nullptr, cw.get());
  rd_kafka_queue_destroy(q);
  if (list) rd_kafka_topic_partition_list_destroy(list);
  if (err) {
    s.abandon_wait(tok);
    return nil_error(L, consumer_error(c, err, "commit"));
  }
  cw.release();
  return lua_yield(L, 0);
}

// The partitions argument of pause/resume/position/committed: a list, or the assignment.
rd_kafka_topic_partition_list_t* partitions_or_assignment(lua_State* L, Consumer* c, int idx, const char* what) {
  if (!lua_isnoneornil(L, idx)) return check_partition_list(L, idx, what, false);
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (rd_kafka_assignment(c->rk(), &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts)
    parts = rd_kafka_topic_partition_list_new(0);
  return parts;
}

int l_pause(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:pause");
  auto* list = partitions_or_assignment(L, c, 2, "c:pause");
  rd_kafka_resp_err_t err = rd_kafka_pause_partitions(c->rk(), list);
  if (!err) c->script_paused(list, true);
  return return_partitions_or_error(L, c, err, list, "pause");
}

int l_resume(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:resume");
  auto* list = partitions_or_assignment(L, c, 2, "c:resume");
  rd_kafka_resp_err_t err = rd_kafka_resume_partitions(c->rk(), list);
  if (!err) c->script_paused(list, false);
  return return_partitions_or_error(L, c, err, list, "resume");
}

// The {timeout_ms=} options table at idx of c:seek, c:committed, c:watermarks and
// c:offsets_for_times; a number there is the old positional timeout (kept for one release, with a warning).
double call_timeout(lua_State* L, int idx, const char* fn, const char* what, const char* instead) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    warn_deprecated(L, what, instead);
    return check_timeout_number(L, idx, fn, lua_tonumber(L, idx));
  }
  return check_timeout_opts(L, idx, fn, DEFAULT_CALL_TIMEOUT_MS);
}

// c:seek(topic, partition, offset, [{timeout_ms=}]): the next poll of that partition starts at
// offset. Yields until librdkafka has moved the partition (rd_kafka_seek_partitions blocks
// until then, so it runs off the loop); returns true or nil, err.
int l_seek(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:seek");
  std::string topic = arg_string(L, 2, "c:seek");
  int32_t partition = arg_partition(L, 3, "c:seek");
  int64_t offset = check_offset(L, 4, "c:seek");
  if (offset == RD_KAFKA_OFFSET_INVALID) raise_bad_argument(L, 4, "c:seek", "an offset is required");
  double timeout = call_timeout(L, 5, "c:seek", "c:seek(topic, partition, offset, timeout_ms)",
                                "c:seek(topic, partition, offset, {timeout_ms=...})");
  // Before the partition's held messages are dropped: raising after that would skip them
  // without seeking.
  check_can_wait(L, "c:seek");
  // Freed with the holder, also when the wait ended (timeout, cancellation) before the seek did.
  struct Result {
    rd_kafka_error_t* error = nullptr;
    rd_kafka_topic_partition_list_t* list = nullptr;
    ~Result() {
      if (error) rd_kafka_error_destroy(error);
      if (list) rd_kafka_topic_partition_list_destroy(list);
    }
  };
  auto r = std::make_shared<Result>();
  r->list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(r->list, topic.c_str(), partition)->offset = offset;
  c->drop_held(r->list);
  c->skip_below_.erase({topic, partition});  // the script moved it: no start to hold it to
  auto started = c->assigned_start.find({topic, partition});
  if (started != c->assigned_start.end()) started->second = offset >= 0 ? offset : -1;
  c->progress_changed(r->list);
  rd_kafka_t* rk = c->rk();
  return c->run_blocking(
      L, "c:seek", timeout, [=](int t) { r->error = rd_kafka_seek_partitions(rk, r->list, t); },
      [=](lua_State* co) {
        ErrorSpec spec;
        bool failed = true;
        if (r->error) {
          spec = kafka_error(r->error);
        } else if (r->list->elems[0].err) {
          spec = kafka_error(r->list->elems[0].err);
        } else {
          failed = false;
        }
        if (!failed) {
          lua_pushboolean(co, 1);
          return 1;
        }
        spec.topic = topic;
        spec.partition = partition;
        spec.group = c->group();
        spec.op = "seek";
        if (spec.name == "_TIMED_OUT") spec.timeout_ms = timeout;
        return nil_error(co, spec);
      },
      false);  // a seek is served by the consumer itself, not by a broker
}

// c:position([partitions]): the next offset the script will get per partition (messages klua has
// fetched but the script has not polled yet are not counted).
int l_position(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:position");
  auto* list = partitions_or_assignment(L, c, 2, "c:position");
  rd_kafka_resp_err_t err = rd_kafka_position(c->rk(), list);
  if (!err) c->script_positions(list);
  return return_partitions_or_error(L, c, err, list, "position");
}

// c:committed([partitions], [{timeout_ms=}]) -> partitions with the group's committed offsets
int l_committed(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:committed");
  double timeout = call_timeout(L, 3, "c:committed", "c:committed(partitions, timeout_ms)", "c:committed(partitions, {timeout_ms=...})");
  check_can_wait(L, "c:committed");
  auto* list = partitions_or_assignment(L, c, 2, "c:committed");
  auto err = std::make_shared<rd_kafka_resp_err_t>(RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_t* rk = c->rk();
  return c->run_blocking(
      L, "c:committed", timeout,
      [=](int t) { *err = rd_kafka_committed(rk, list, t); },
      [=](lua_State* co) { return return_partitions_or_error(co, c, *err, list, "committed"); });
}

// c:watermarks(topic, partition, [{timeout_ms=}]) -> low, high (asks the broker)
int l_watermarks(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:watermarks");
  std::string topic = arg_string(L, 2, "c:watermarks");
  int32_t partition = arg_partition(L, 3, "c:watermarks");
  double timeout = call_timeout(L, 4, "c:watermarks", "c:watermarks(topic, partition, timeout_ms)",
                                "c:watermarks(topic, partition, {timeout_ms=...})");
  struct Result {
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int64_t low = 0, high = 0;
  };
  auto r = std::make_shared<Result>();
  rd_kafka_t* rk = c->rk();
  return c->run_blocking(
      L, "c:watermarks", timeout,
      [=](int t) { r->err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &r->low, &r->high, t); },
      [=](lua_State* co) {
        if (r->err) {
          ErrorSpec e = consumer_error(c, r->err, "watermarks");
          e.topic = topic;
          e.partition = partition;
          return nil_error(co, e);
        }
        lua_pushnumber(co, static_cast<double>(r->low));
        lua_pushnumber(co, static_cast<double>(r->high));
        return 2;
      });
}

// c:offsets_for_times(partitions, [{timeout_ms=}]): `offset` of each item is a timestamp (epoch ms);
// returns the earliest offset whose timestamp is at or after it (nil offset: none).
int l_offsets_for_times(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:offsets_for_times");
  double timeout = call_timeout(L, 3, "c:offsets_for_times", "c:offsets_for_times(partitions, timeout_ms)",
                                "c:offsets_for_times(partitions, {timeout_ms=...})");
  check_can_wait(L, "c:offsets_for_times");
  auto* list = check_partition_list(L, 2, "c:offsets_for_times", false);
  auto err = std::make_shared<rd_kafka_resp_err_t>(RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_t* rk = c->rk();
  return c->run_blocking(
      L, "c:offsets_for_times", timeout,
      [=](int t) { *err = rd_kafka_offsets_for_times(rk, list, t); },
      [=](lua_State* co) { return return_partitions_or_error(co, c, *err, list, "offsets_for_times", true); });
}

// end_offsets(c, [partitions]) -> partitions (default: the assignment) with `low` and `end` (the
// latest offset under the consumer's isolation level: the last stable offset under
// read_committed), or nil, err: for messages{until_end=true}. A partition's own error (its
// leader unknown, the topic gone) is the error: its offsets are no answer.
int l_end_offsets(lua_State* L) {
  Consumer* c = check_consumer(L, 1, "c:messages");
  check_can_wait(L, "c:messages");
  rd_kafka_topic_partition_list_t* assigned = partitions_or_assignment(L, c, 2, "c:messages");
  auto* low = rd_kafka_topic_partition_list_copy(assigned);
  auto* end = assigned;
  for (int i = 0; i < low->cnt; ++i) {
    low->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
    end->elems[i].offset = RD_KAFKA_OFFSET_END;
  }
  auto err = std::make_shared<rd_kafka_resp_err_t>(RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_t* rk = c->rk();
  return c->run_blocking(
      L, "c:messages (end offsets)", DEFAULT_CALL_TIMEOUT_MS,
      [=](int t) {
        // ListOffsets with logical offsets, one request per leader; "latest" honours isolation.level.
        *err = rd_kafka_offsets_for_times(rk, low, t);
        if (!*err) *err = rd_kafka_offsets_for_times(rk, end, t);
      },
      [=](lua_State* co) {
        for (auto* list : {low, end}) {
          for (int i = 0; !*err && i < list->cnt; ++i) {
            if (!list->elems[i].err) continue;
            ErrorSpec e = consumer_error(c, list->elems[i].err, "messages (end offsets)");
            e.topic = list->elems[i].topic;
            e.partition = list->elems[i].partition;
            rd_kafka_topic_partition_list_destroy(low);
            rd_kafka_topic_partition_list_destroy(end);
            return nil_error(co, e);
          }
        }
        if (*err) {
          rd_kafka_topic_partition_list_destroy(low);
          return return_partitions_or_error(co, c, *err, end, "messages");
        }
        lua_createtable(co, end->cnt, 0);
        for (int i = 0; i < end->cnt; ++i) {
          lua_createtable(co, 0, 4);
          lua_pushstring(co, end->elems[i].topic);
          lua_setfield(co, -2, "topic");
          lua_pushinteger(co, end->elems[i].partition);
          lua_setfield(co, -2, "partition");
          lua_pushnumber(co, static_cast<double>(low->elems[i].offset));
          lua_setfield(co, -2, "low");
          lua_pushnumber(co, static_cast<double>(end->elems[i].offset));
          lua_setfield(co, -2, "end");
          lua_rawseti(co, -2, i + 1);
        }
        rd_kafka_topic_partition_list_destroy(low);
        rd_kafka_topic_partition_list_destroy(end);
        return 1;
      });
}

}  // namespace consumer_impl

using consumer_impl::Consumer;
using consumer_impl::check_consumer;

rd_kafka_topic_partition_list_t* consumer_positions(lua_State* L, int idx, rd_kafka_topic_partition_list_t* list,
                                                    rd_kafka_resp_err_t* err) {
  Consumer* c = check_consumer(L, idx);
  *err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (!list) {
    *err = rd_kafka_assignment(c->rk(), &list);
    if (*err) return list;
  }
  *err = rd_kafka_position(c->rk(), list);
  if (!*err) c->script_positions(list);
  return list;
}
}  // namespace klua
