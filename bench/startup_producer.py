"""Startup benchmark, Python twin of bench/startup_producer.lua: create a
producer (klua's default configuration), send one message, wait for its
delivery report and exit.
    python bench/startup_producer.py BROKERS TOPIC
"""
import sys

from confluent_kafka import Producer

errors = []
p = Producer({"bootstrap.servers": sys.argv[1], "enable.idempotence": True})
p.produce(sys.argv[2], b"x", on_delivery=lambda err, msg: errors.append(err) if err else None)
if p.flush(30) != 0 or errors:
    sys.exit(f"startup_producer.py: delivery failed: {errors}")
