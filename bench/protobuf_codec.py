"""Python protobuf (upb) doing what bench/protobuf_codec.lua does: build+serialize, parse into a dict."""
import time, sys
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
fdp = descriptor_pb2.FileDescriptorProto(name="r.proto", syntax="proto3")
m = fdp.message_type.add(name="R")
T = descriptor_pb2.FieldDescriptorProto
for i,(n,t) in enumerate([("id",T.TYPE_INT64),("name",T.TYPE_STRING),("amount",T.TYPE_DOUBLE),("qty",T.TYPE_INT32),("active",T.TYPE_BOOL),("country",T.TYPE_STRING),("ts",T.TYPE_INT64),("score",T.TYPE_FLOAT),("email",T.TYPE_STRING),("tier",T.TYPE_INT32)]):
    m.field.add(name=n, number=i+1, type=t, label=T.LABEL_OPTIONAL)
pool = descriptor_pool.DescriptorPool(); pool.Add(fdp)
R = message_factory.GetMessageClass(pool.FindMessageTypeByName("R"))
d = dict(id=123456789, name="customer name", amount=1234.56, qty=7, active=True, country="DE", ts=1700000000000, score=0.5, email="someone@example.com", tier=3)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
t0=time.perf_counter()
for _ in range(N): b = R(**d).SerializeToString()
t1=time.perf_counter()
for _ in range(N):
    x = R(); x.ParseFromString(b); v = {f.name: getattr(x, f.name) for f in x.DESCRIPTOR.fields}
t2=time.perf_counter()
print("python upb: encode %.0f ns/msg, decode+dict %.0f ns/msg" % ((t1-t0)*1e9/N, (t2-t1)*1e9/N))
