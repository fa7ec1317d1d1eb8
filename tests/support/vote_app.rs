//! The five-service voting app of `tests/stack_vote.rs` and
//! `benches/stack.rs`, as a user would keep it in a repository: a Compose
//! file and one directory per service, each with a Dockerfile `FROM
//! slipway/debian:bookworm` that installs Debian's packages (Flask,
//! redis-server, PostgreSQL). No official images: the database's entrypoint
//! initialises its volume itself and drops to the `postgres` user.
//!
//! - `vote` (Flask, port 80, route `/`): `GET /` answers the front's version,
//!   `GET|POST /vote?choice=a|b[&voter=ID]` queues the vote in Redis.
//! - `worker`: moves votes from Redis into PostgreSQL (at least once: a
//!   vote leaves Redis only after its row is written; one row per voter).
//! - `result` (Flask, port 80, route `/result`): the counts as JSON.
//! - `redis`, `db` (named volume `db-data`): health-checked.
//! - `migrate`: a one-off task creating the table, run once per release.

#![allow(dead_code)]

use std::path::Path;

/// The Compose file. `${VOTE_PORT}`/`${RESULT_PORT}` only choose the host
/// ports `docker-compose` publishes (on loopback); Slipway publishes none.
pub const COMPOSE: &str = r#"# The voting app: a Flask front queues votes in Redis, a worker moves them
# into PostgreSQL, a second Flask app shows the counts.
services:
  vote:
    build: ./vote
    ports:
      - "127.0.0.1:${VOTE_PORT:-5000}:80"
    depends_on:
      redis:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully

  worker:
    build: ./worker
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-vote-secret}
    depends_on:
      redis:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully

  result:
    build: ./result
    ports:
      - "127.0.0.1:${RESULT_PORT:-5001}:80"
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-vote-secret}
    depends_on:
      migrate:
        condition: service_completed_successfully
    x-slipway:
      path: /result

  redis:
    build: ./redis
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 3s
      retries: 30

  db:
    build: ./db
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-vote-secret}
    volumes:
      - db-data:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -q -h 127.0.0.1 -U postgres"]
      interval: 1s
      timeout: 3s
      retries: 60

  migrate:
    build: ./worker
    command: ["python3", "migrate.py"]
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-vote-secret}
    restart: "no"
    depends_on:
      db:
        condition: service_healthy

volumes:
  db-data:
"#;

/// The first lines of every Python service's Dockerfile: the same
/// instructions, so Docker's build cache installs the packages once.
const PYTHON_BASE: &str = "FROM slipway/debian:bookworm\n\
RUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\\n    python3-flask python3-redis python3-psycopg2 \\\n && rm -rf /var/lib/apt/lists/*\n\
WORKDIR /app\n";

fn python_dockerfile(main: &str) -> String {
    format!("{PYTHON_BASE}COPY . /app\nCMD [\"python3\", \"-u\", \"{main}\"]\n")
}

const VOTE_PY: &str = r#""""The voting front: queues each vote in Redis for the worker."""
import json
import os
import uuid

import redis
from flask import Flask, request

app = Flask(__name__)
queue = redis.Redis(host="redis", port=6379, socket_timeout=5)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION")) as f:
    VERSION = f.read().strip()


@app.route("/")
def index():
    return VERSION + "\n"


@app.route("/vote", methods=["GET", "POST"])
def vote():
    choice = request.values.get("choice", "")
    if choice not in ("a", "b"):
        return "choice must be a or b\n", 400
    voter = request.values.get("voter") or uuid.uuid4().hex
    queue.rpush("votes", json.dumps({"voter": voter, "choice": choice}))
    return "queued\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=80, threaded=True)
"#;

const WORKER_PY: &str = r#""""Moves votes from Redis into PostgreSQL. A vote leaves Redis only once
its row is written (it waits in the `processing` list meanwhile)."""
import json
import os
import time

import psycopg2
import redis

queue = redis.Redis(host="redis", port=6379, socket_timeout=10)


def connect():
    conn = psycopg2.connect(host="db", user="postgres", dbname="postgres",
                            password=os.environ["POSTGRES_PASSWORD"], connect_timeout=3)
    conn.autocommit = True
    return conn


def main():
    conn = None
    print("worker started", flush=True)
    while True:
        try:
            # Votes a previous worker took but did not write go first.
            while queue.lmove("processing", "votes", "RIGHT", "LEFT"):
                pass
            while True:
                if conn is None:
                    conn = connect()
                    print("connected to db", flush=True)
                item = queue.blmove("votes", "processing", 1, "LEFT", "RIGHT")
                if item is None:
                    continue
                vote = json.loads(item)
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO votes (voter, choice) VALUES (%s, %s) "
                        "ON CONFLICT (voter) DO UPDATE SET choice = EXCLUDED.choice",
                        (vote["voter"], vote["choice"]),
                    )
                queue.lrem("processing", 1, item)
        except (psycopg2.Error, redis.RedisError, OSError) as e:
            print(f"retrying after: {e}", flush=True)
            if conn is not None:
                try:
                    conn.close()
                except psycopg2.Error:
                    pass
            conn = None
            time.sleep(0.5)


if __name__ == "__main__":
    main()
"#;

const MIGRATE_PY: &str = r#""""The schema: run once per release, before the services that use it."""
import os
import sys
import time

import psycopg2

deadline = time.time() + 60
while True:
    try:
        conn = psycopg2.connect(host="db", user="postgres", dbname="postgres",
                                password=os.environ["POSTGRES_PASSWORD"], connect_timeout=3)
        break
    except psycopg2.OperationalError as e:
        if time.time() > deadline:
            sys.exit(f"db unreachable: {e}")
        time.sleep(0.5)
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute(
        "CREATE TABLE IF NOT EXISTS votes ("
        " voter text PRIMARY KEY,"
        " choice text NOT NULL CHECK (choice IN ('a', 'b')),"
        " cast_at timestamptz NOT NULL DEFAULT now())"
    )
conn.close()
print("migrated", flush=True)
"#;

const RESULT_PY: &str = r#""""The results: vote counts from PostgreSQL, as JSON."""
import os

import psycopg2
from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/result")
def result():
    conn = psycopg2.connect(host="db", user="postgres", dbname="postgres",
                            password=os.environ["POSTGRES_PASSWORD"], connect_timeout=3)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT choice, count(*) FROM votes GROUP BY choice")
            counts = dict(cur.fetchall())
    finally:
        conn.close()
    return jsonify(a=counts.get("a", 0), b=counts.get("b", 0))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=80, threaded=True)
"#;

const REDIS_DOCKERFILE: &str = "FROM slipway/debian:bookworm\n\
RUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\\n && rm -rf /var/lib/apt/lists/*\n\
CMD [\"redis-server\", \"--bind\", \"0.0.0.0\", \"--protected-mode\", \"no\", \"--save\", \"\", \"--appendonly\", \"no\"]\n";

/// PostgreSQL from Debian's package; `pg_isready`, `initdb` and `postgres`
/// of its version on PATH.
const DB_DOCKERFILE: &str = "FROM slipway/debian:bookworm\n\
RUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \\\n && rm -rf /var/lib/apt/lists/* \\\n && ln -s /usr/lib/postgresql/*/bin /usr/lib/postgresql/bin\n\
ENV PATH=/usr/lib/postgresql/bin:$PATH PGDATA=/var/lib/postgresql/data\n\
COPY entrypoint.sh /usr/local/bin/entrypoint.sh\n\
RUN chmod 755 /usr/local/bin/entrypoint.sh\n\
ENTRYPOINT [\"/usr/local/bin/entrypoint.sh\"]\n\
CMD [\"postgres\"]\n";

/// Like the official image's entrypoint, in small: as root (CHOWN, SETUID,
/// SETGID are all it needs), give the data directory to `postgres`,
/// initialise it when empty, then run the server as `postgres` on every
/// address with password authentication from the network.
const DB_ENTRYPOINT: &str = r#"#!/bin/sh
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "initialised $PGDATA"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    "$@" -D "$PGDATA" -c listen_addresses='*'
"#;

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Writes the whole app into `dir` (a git work tree), the front at `version`.
pub fn write_repo(dir: &Path, version: &str) {
    write(dir, "compose.yaml", COMPOSE);
    write(dir, "vote/Dockerfile", &python_dockerfile("app.py"));
    write(dir, "vote/app.py", VOTE_PY);
    write_version(dir, version);
    write(dir, "worker/Dockerfile", &python_dockerfile("worker.py"));
    write(dir, "worker/worker.py", WORKER_PY);
    write(dir, "worker/migrate.py", MIGRATE_PY);
    write(dir, "result/Dockerfile", &python_dockerfile("app.py"));
    write(dir, "result/app.py", RESULT_PY);
    write(dir, "redis/Dockerfile", REDIS_DOCKERFILE);
    write(dir, "db/Dockerfile", DB_DOCKERFILE);
    write(dir, "db/entrypoint.sh", DB_ENTRYPOINT);
}

/// Changes only the front: the version `GET /` answers.
pub fn write_version(dir: &Path, version: &str) {
    write(dir, "vote/VERSION", &format!("{version}\n"));
}

/// Every service of the stack, tasks included.
pub const SERVICES: [&str; 6] = ["vote", "worker", "result", "redis", "db", "migrate"];
