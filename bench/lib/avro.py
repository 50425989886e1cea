"""klua.avro against Python: encode and decode of 100k records of 10 fields (bench/avro.lua and
bench/avro_python.py, the same records). Goal (issue 20): klua >= 5x Python confluent-kafka's
AvroSerializer/AvroDeserializer; fastavro's schemaless writer/reader printed beside them. Process
CPU time, medians of the runs; both sides must produce the same number of Avro bytes (the
confluent frames are 5 bytes longer each)."""
import json
import os
import subprocess

from common import BENCH, RunError

GOAL = 5.0


def _run(env, cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=env.timeout)
    if p.returncode != 0:
        raise RunError(f"{' '.join(cmd)}: exit status {p.returncode}: {p.stderr.strip()[-300:]}")
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise RunError(f"{' '.join(cmd)} printed no JSON: {e}: {p.stdout[-300:]}")


def bench(env, quick, table):
    records, runs = (10000, 1) if quick else (100000, 5)
    print(f"== avro (encode/decode {records:,} records of 10 fields; CPU time, median of {runs})", flush=True)
    k = _run(env, [env.klua, "run", os.path.join(BENCH, "avro.lua"), "--records", str(records),
                   "--runs", str(runs), "--json", "1"])
    kfig = lambda op: f"{k[op + '_ns']:.0f} ns/record ({k[op + '_per_s']:,.0f}/s)"
    if "python" in env.skip:
        table.add("avro", "lua", "encode " + kfig("encode"))
        table.add("avro", "lua", "decode " + kfig("decode"))
        return
    p = _run(env, [env.python, os.path.join(BENCH, "avro_python.py"), "--records", str(records), "--runs", str(runs)])
    if p["bytes_fastavro"] != k["bytes"] or p["bytes_confluent"] != k["bytes"] + 5 * records:
        raise RunError(f"avro: klua wrote {k['bytes']} bytes, fastavro {p['bytes_fastavro']}, "
                       f"confluent {p['bytes_confluent']} (frames): not the same records")
    for op in ("encode", "decode"):
        ck, fa = p[f"confluent_{op}_s"], p[f"fastavro_{op}_s"]
        ratio = ck / k[f"{op}_s"]
        print(f"  {op}: klua {kfig(op)}; confluent-kafka {ck * 1e9 / records:.0f} ns; fastavro "
              f"{fa * 1e9 / records:.0f} ns; klua/confluent {ratio:.2f}x, klua/fastavro {fa / k[f'{op}_s']:.2f}x",
              flush=True)
        table.judge("avro", "lua", f"{op} {kfig(op)}", ratio, f">= {GOAL:.0f}x confluent-kafka",
                    lambda r: r >= GOAL, judged=not quick, ratio_label="")
        table.add("avro", "python", f"{op} confluent-kafka Avro{'Serializer' if op == 'encode' else 'Deserializer'}: "
                                    f"{ck * 1e9 / records:.0f} ns/record")
        table.add("avro", "python", f"{op} fastavro schemaless: {fa * 1e9 / records:.0f} ns/record",
                  f"{fa / k[f'{op}_s']:.2f}")
