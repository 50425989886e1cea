#!/usr/bin/env python3
"""Independent answers for klua's admin tests, from Python confluent-kafka's AdminClient (another
binding, its own librdkafka). Prints one JSON document.

  pyadmin.py BROKERS configs TYPE NAME          {name: value} of the resource's configs
  pyadmin.py BROKERS cluster                    {"cluster_id", "controller", "brokers": [ids], "racks": {id: rack}}
  pyadmin.py BROKERS topic NAME                 {"topic_id", "partitions": [{"partition", "leader", "replicas", "isr"}]}
  pyadmin.py BROKERS offsets SPEC ISO TOPIC:P.. [{"partition", "offset", "timestamp"}]; SPEC earliest|latest|max|<ms>
  pyadmin.py BROKERS scram USER...              {user: [[mechanism, iterations], ...] or "error"}
  pyadmin.py BROKERS acls PRINCIPAL             [[restype, name, pattern, principal, host, operation, permission]]
  pyadmin.py BROKERS groups                     {group: {"state", "type"}}
"""
import json
import sys

from confluent_kafka import ConsumerGroupState, IsolationLevel, TopicCollection, TopicPartition
from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, AdminClient, ConfigResource,
                                   OffsetSpec, ResourcePatternType, ResourceType)


def main():
    brokers, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    a = AdminClient({"bootstrap.servers": brokers})
    T = 20
    if cmd == "configs":
        res = ConfigResource(args[0], args[1])
        got = a.describe_configs([res], request_timeout=T)[res].result(T)
        out = {k: v.value for k, v in got.items()}
    elif cmd == "cluster":
        d = a.describe_cluster(request_timeout=T).result(T)
        out = {"cluster_id": d.cluster_id, "controller": d.controller.id, "brokers": sorted(n.id for n in d.nodes),
               "racks": {str(n.id): n.rack for n in d.nodes}}
    elif cmd == "topic":
        d = a.describe_topics(TopicCollection([args[0]]), request_timeout=T)[args[0]].result(T)
        out = {"topic_id": str(d.topic_id), "partitions": [
            {"partition": p.id, "leader": p.leader.id, "replicas": [r.id for r in p.replicas],
             "isr": [r.id for r in p.isr]} for p in d.partitions]}
    elif cmd == "offsets":
        spec, iso, parts = args[0], args[1], args[2:]
        if spec == "earliest":
            s = OffsetSpec.earliest()
        elif spec == "latest":
            s = OffsetSpec.latest()
        elif spec == "max":
            s = OffsetSpec.max_timestamp()
        else:
            s = OffsetSpec.for_timestamp(int(spec))
        req = {}
        for tp in parts:
            t, p = tp.rsplit(":", 1)
            req[TopicPartition(t, int(p))] = s
        level = IsolationLevel.READ_COMMITTED if iso == "read_committed" else IsolationLevel.READ_UNCOMMITTED
        futs = a.list_offsets(req, isolation_level=level, request_timeout=T)
        out = []
        for tp, f in futs.items():
            r = f.result(T)
            out.append({"topic": tp.topic, "partition": tp.partition, "offset": r.offset, "timestamp": r.timestamp})
        out.sort(key=lambda x: (x["topic"], x["partition"]))
    elif cmd == "scram":
        futs = a.describe_user_scram_credentials(args, request_timeout=T)
        out = {}
        for user, f in futs.items():
            try:
                d = f.result(T)
                out[user] = sorted([str(i.mechanism).split(".")[-1], i.iterations] for i in d.scram_credential_infos)
            except Exception as e:  # noqa: BLE001 - the test wants the error's existence only
                out[user] = "error: " + str(e)
    elif cmd == "acls":
        f = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, args[0], None, AclOperation.ANY,
                             AclPermissionType.ANY)
        got = a.describe_acls(f, request_timeout=T).result(T)
        out = sorted([b.restype.name.lower(), b.name, b.resource_pattern_type.name.lower(), b.principal, b.host,
                      b.operation.name.lower(), b.permission_type.name.lower()] for b in got)
    elif cmd == "groups":
        r = a.list_consumer_groups(request_timeout=T).result(T)
        out = {g.group_id: {"state": g.state.name, "type": g.type.name.lower()} for g in r.valid}
    else:
        sys.exit("unknown command " + cmd)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
