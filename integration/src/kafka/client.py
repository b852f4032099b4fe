"""Real Kafka clients driven by the integration tests (geomesh_integration::kafka_clients).

usage: client.py '<json op>'   ->   one JSON object on stdout

ops (every op has "client": "confluent" (librdkafka) or "kafka-python", and "bootstrap"; with
"sasl": [user, password] the client authenticates with SASL PLAIN first):
  {"op": "create", "topics": {"name": partitions, ...}}
      -> {"created": [names]}
  {"op": "produce", "topic": t, "records": [[key|null, value(, topic)], ...], "partition": p|null,
   "idempotent": bool, "acks": "all"|1|0, "message_timeout_ms": ms|null}
      -> {"acked": [[partition, offset], ...]} in the order the records were given
         (a record's third element names its topic instead of "topic"; with acks 0 the
         offsets are -1)
  {"op": "consume", "topics": [t, ...], "count": n, "group": g|null, "timeout_s": s,
   "commit": bool}
      -> {"records": [[topic, partition, offset, key, value], ...]} (group: subscribe and
         commit at the end when "commit"; no group: assign every partition from the start)
  {"op": "topics"} -> {"topics": {name: partitions}, "brokers": [[id, host, port], ...]}
  {"op": "delete", "topics": [t, ...]} (confluent only) -> {"deleted": [names]}
  {"op": "committed", "group": g, "partitions": [[t, p], ...]} (confluent only)
      -> {"committed": [[t, p, offset], ...]} (offset -1001: none committed)
  {"op": "bench", "topics": [t, ...], "records": n, "size": bytes, "latency_records": m}
      (confluent only) -> {"produce_s": s, "consume_s": s, "consumed": n, "latency_ms": [...]}:
      n records of `size` bytes spread round-robin over the topics with acks=1 as fast as
      librdkafka sends them, then all of them read back from the start (assign), then m
      records produced one at a time (each waited for) for the latencies
Keys and values are UTF-8 strings here. Exits non-zero with a message on stderr on failure.
"""
import json
import sys
import time


def dec(b):
    return None if b is None else b.decode()


def confluent(op):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    bs = op["bootstrap"]
    kind = op["op"]
    base = {"bootstrap.servers": bs}
    if op.get("sasl"):
        base.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                     "sasl.username": op["sasl"][0], "sasl.password": op["sasl"][1]})
    if kind == "create":
        admin = AdminClient({**base})
        futs = admin.create_topics(
            [NewTopic(t, n, 1) for t, n in op["topics"].items()], operation_timeout=30)
        for f in futs.values():
            f.result(30)
        return {"created": sorted(futs)}
    if kind == "delete":
        admin = AdminClient({**base})
        futs = admin.delete_topics(op["topics"], operation_timeout=30)
        for f in futs.values():
            f.result(30)
        return {"deleted": sorted(futs)}
    if kind == "committed":
        c = Consumer({**base, "group.id": op["group"], "enable.auto.commit": False})
        got = c.committed([TopicPartition(t, p) for t, p in op["partitions"]], timeout=30)
        c.close()
        return {"committed": [[tp.topic, tp.partition, tp.offset] for tp in got]}
    if kind == "topics":
        md = AdminClient({**base}).list_topics(timeout=30)
        return {"topics": {t: len(m.partitions) for t, m in md.topics.items()},
                "brokers": sorted([b.id, b.host, b.port] for b in md.brokers.values())}
    if kind == "produce":
        conf = {**base, "enable.idempotence": bool(op.get("idempotent")),
                "acks": str(op.get("acks", "all")), "linger.ms": 20}
        if op.get("message_timeout_ms"):
            conf["message.timeout.ms"] = op["message_timeout_ms"]
        p = Producer(conf)
        acked = [None] * len(op["records"])
        errors = []

        def report(i):
            def cb(err, msg):
                if err is not None:
                    errors.append(str(err))
                else:
                    acked[i] = [msg.partition(), msg.offset()]
            return cb

        for i, rec in enumerate(op["records"]):
            k, v = rec[0], rec[1]
            topic = rec[2] if len(rec) > 2 else op["topic"]
            kw = {} if op.get("partition") is None else {"partition": op["partition"]}
            p.produce(topic, key=None if k is None else k.encode(), value=v.encode(),
                      on_delivery=report(i), **kw)
        left = p.flush(30)
        if errors or left:
            raise RuntimeError(f"produce: {left} unflushed, errors {errors}")
        return {"acked": acked}
    if kind == "consume":
        conf = {**base, "auto.offset.reset": "earliest",
                "enable.auto.commit": False, "check.crcs": True,
                "group.id": op.get("group") or "geomesh-unused"}
        c = Consumer(conf)
        if op.get("group"):
            c.subscribe(op["topics"])
        else:
            md = c.list_topics(timeout=30)
            c.assign([TopicPartition(t, p, 0) for t in op["topics"]
                      for p in md.topics[t].partitions])
        out = []
        deadline = time.time() + op.get("timeout_s", 60)
        while len(out) < op["count"] and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise RuntimeError(f"consume: {m.error()}")
            out.append([m.topic(), m.partition(), m.offset(), dec(m.key()), dec(m.value())])
        if op.get("group") and op.get("commit"):
            c.commit(asynchronous=False)
        c.close()
        return {"records": out}
    if kind == "bench":
        topics, n, size = op["topics"], op["records"], op["size"]
        value = b"x" * size
        p = Producer({**base, "acks": "1", "linger.ms": 5,
                      "queue.buffering.max.messages": 1000000})
        errors = []

        def cb(err, msg):
            if err is not None:
                errors.append(str(err))
        for t in topics:  # metadata and connections before the clock starts
            p.produce(t, value=b"warm", on_delivery=cb)
        p.flush(30)
        start = time.time()
        for i in range(n):
            while True:
                try:
                    p.produce(topics[i % len(topics)], value=value, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.01)
        left = p.flush(120)
        produce_s = time.time() - start
        if errors or left:
            raise RuntimeError(f"bench produce: {left} unflushed, errors {errors[:3]}")
        lat = []
        for i in range(op.get("latency_records", 0)):
            t0 = time.time()
            p.produce(topics[i % len(topics)], value=value, on_delivery=cb)
            p.flush(30)
            lat.append((time.time() - t0) * 1000.0)
        c = Consumer({**base, "group.id": "geomesh-bench", "enable.auto.commit": False,
                      "fetch.max.bytes": 52428800})
        md = c.list_topics(timeout=30)
        c.assign([TopicPartition(t, q, 0) for t in topics for q in md.topics[t].partitions])
        got = 0
        want = n + len(topics)
        start = time.time()
        deadline = start + 120
        while got < want and time.time() < deadline:
            msgs = c.consume(num_messages=10000, timeout=0.5)
            for m in msgs:
                if m.error():
                    raise RuntimeError(f"bench consume: {m.error()}")
            got += len(msgs)
        consume_s = time.time() - start
        c.close()
        return {"produce_s": produce_s, "consume_s": consume_s, "consumed": got, "latency_ms": lat}
    raise ValueError(f"unknown op {kind}")


def kafka_python(op):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    bs = op["bootstrap"]
    kind = op["op"]
    kbase = {"bootstrap_servers": bs}
    if op.get("sasl"):
        kbase.update(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                     sasl_plain_username=op["sasl"][0], sasl_plain_password=op["sasl"][1])
    if kind == "create":
        admin = KafkaAdminClient(**kbase, request_timeout_ms=30000)
        admin.create_topics([NewTopic(t, n, 1) for t, n in op["topics"].items()])
        admin.close()
        return {"created": sorted(op["topics"])}
    if kind == "topics":
        c = KafkaConsumer(**kbase)
        topics = {t: len(c.partitions_for_topic(t) or ()) for t in c.topics()}
        brokers = sorted([b.nodeId, b.host, b.port] for b in c._client.cluster.brokers())
        c.close()
        return {"topics": topics, "brokers": brokers}
    if kind == "produce":
        acks = op.get("acks", "all")
        p = KafkaProducer(**kbase, acks=acks if acks == "all" else int(acks),
                          enable_idempotence=bool(op.get("idempotent")), linger_ms=20)
        futs = [p.send(op["topic"], key=None if k is None else k.encode(), value=v.encode(),
                       partition=op.get("partition"))
                for k, v in op["records"]]
        p.flush(30)
        acked = []
        for f in futs:
            md = f.get(timeout=30)
            acked.append([md.partition, md.offset])
        p.close()
        return {"acked": acked}
    if kind == "consume":
        group = op.get("group")
        c = KafkaConsumer(**kbase, group_id=group, auto_offset_reset="earliest",
                          enable_auto_commit=False, check_crcs=True)
        if group:
            c.subscribe(op["topics"])
        else:
            c.assign([TopicPartition(t, p) for t in op["topics"]
                      for p in sorted(c.partitions_for_topic(t) or ())])
        out = []
        deadline = time.time() + op.get("timeout_s", 60)
        while len(out) < op["count"] and time.time() < deadline:
            for tp, msgs in c.poll(timeout_ms=500).items():
                for m in msgs:
                    out.append([m.topic, m.partition, m.offset, dec(m.key), dec(m.value)])
        if group and op.get("commit"):
            c.commit()
        c.close()
        return {"records": out}
    raise ValueError(f"unknown op {kind}")


def main():
    op = json.loads(sys.argv[1])
    run = {"confluent": confluent, "kafka-python": kafka_python}[op["client"]]
    print(json.dumps(run(op)))


if __name__ == "__main__":
    main()
