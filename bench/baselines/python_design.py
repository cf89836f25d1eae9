#!/usr/bin/env python3
"""The original design, written the way a hand-made Python service would be: the baseline that
`just bench pipeline` measures ProAct against (bench/pipeline/run.sh, crates/e2e/examples/pipeline-bench).

One process, one message at a time, in paho-mqtt's network thread:

    on_message → json.loads → INSERT into PostgreSQL (commit) → XADD to Redis
               → temperature > 90 ? → alert: INSERT, XADD to the alerts stream, push to WebSocket clients

No batching, no pipelining, no worker pool: that is the design being measured, not a straw man.
It subscribes at QoS 1 with paho's defaults (clean session), so paho acknowledges each message after
`on_message` returns, and whatever the broker still holds for it when it stops is gone.

It uses its own database, table and stream keys (`--database`, `py_telemetry`, `py:telemetry`,
`py:alerts`) so its results never mix with ProAct's on the same servers.
Prints `ready` once subscribed; stops on SIGTERM/SIGINT.
"""

import argparse
import json
import signal
import sys
import threading
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import psycopg2
import redis
from websockets.sync.server import serve

TOPIC = "sensors/+/telemetry"
THRESHOLD = 90.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS py_telemetry (
    id BIGSERIAL PRIMARY KEY,
    equipement_id TEXT NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    temperature DOUBLE PRECISION,
    vibration DOUBLE PRECISION,
    UNIQUE (equipement_id, ts)
);
CREATE TABLE IF NOT EXISTS py_alerts (
    id BIGSERIAL PRIMARY KEY,
    equipement_id TEXT NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    temperature DOUBLE PRECISION,
    message TEXT
);
"""


class Service:
    def __init__(self, args):
        self.db = psycopg2.connect(args.database_url)
        with self.db.cursor() as cur:
            cur.execute(SCHEMA)
        self.db.commit()
        self.redis = redis.Redis.from_url(args.redis_url)
        self.clients = set()
        self.clients_lock = threading.Lock()
        self.errors = 0

    # --- WebSocket: the dashboard's clients ---------------------------------------------
    def ws_handler(self, ws):
        with self.clients_lock:
            self.clients.add(ws)
        try:
            for _ in ws:  # the dashboard sends nothing; wait for it to go away
                pass
        finally:
            with self.clients_lock:
                self.clients.discard(ws)

    def push(self, text):
        with self.clients_lock:
            clients = list(self.clients)
        for ws in clients:
            try:
                ws.send(text)
            except Exception:
                pass

    # --- MQTT ------------------------------------------------------------------------------
    def on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe(TOPIC, qos=1)

    def on_subscribe(self, client, userdata, mid, reason_codes, properties):
        print("ready", flush=True)

    def on_message(self, client, userdata, msg):
        try:
            data = json.loads(msg.payload)
            eq = data["equipement_id"]
            ts = data["timestamp"]
            temperature = float(data["temperature"])
            vibration = float(data["vibration"])
        except (ValueError, KeyError, TypeError):
            self.errors += 1
            return
        try:
            with self.db.cursor() as cur:
                cur.execute(
                    "INSERT INTO py_telemetry (equipement_id, ts, temperature, vibration) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (eq, ts, temperature, vibration),
                )
            self.db.commit()
        except psycopg2.Error:
            self.db.rollback()
            self.errors += 1
            return
        self.redis.xadd("py:telemetry", {"equipement_id": eq, "timestamp": ts,
                                         "temperature": temperature, "vibration": vibration})
        if temperature > THRESHOLD:
            self.alert(eq, ts, temperature)

    def alert(self, eq, ts, temperature):
        message = f"température {temperature:.1f} °C > {THRESHOLD:.0f} °C"
        with self.db.cursor() as cur:
            cur.execute(
                "INSERT INTO py_alerts (equipement_id, ts, temperature, message) VALUES (%s, %s, %s, %s)",
                (eq, ts, temperature, message),
            )
        self.db.commit()
        event = {"type": "alert", "equipement_id": eq, "timestamp": ts, "temperature": temperature,
                 "message": message}
        self.redis.xadd("py:alerts", {"equipement_id": eq, "timestamp": ts, "temperature": temperature})
        self.push(json.dumps(event))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    p.add_argument("--database-url", default="postgres://proact@127.0.0.1:5432/python_design")
    p.add_argument("--ws-port", type=int, default=8765)
    p.add_argument("--client-id", default="python-design")
    args = p.parse_args()

    svc = Service(args)
    ws_server = serve(svc.ws_handler, "127.0.0.1", args.ws_port)
    threading.Thread(target=ws_server.serve_forever, daemon=True).start()

    broker = urlparse(args.mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id)
    client.on_connect = svc.on_connect
    client.on_subscribe = svc.on_subscribe
    client.on_message = svc.on_message
    client.connect(broker.hostname, broker.port or 1883, keepalive=30)

    def stop(*_):
        client.disconnect()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client.loop_forever()
    ws_server.shutdown()
    print(f"stopped (errors: {svc.errors})", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
