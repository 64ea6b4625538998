//! Scale-out: replicas sharing their state on a real PostgreSQL server (started by the
//! test on a loopback port, stopped by PID), in front of one remote cloud (moto).
#![forbid(unsafe_code)]

use serde_json::{json, Value};
use skyport_e2e::ec2::{access_key, Moto};
use skyport_e2e::replicas::{bill_of, bills_path, storage, with_shared_ledger};
use skyport_e2e::{expect_problem, Gateway, GatewayOptions};
use skyport_store_postgres::testkit::PostgresServer;

/// A replica of `config`, on storage `storage`, in front of `moto`.
fn replica_options(config: &str, storage: &str, moto: &Moto) -> GatewayOptions {
    GatewayOptions {
        config: Some(config.to_string()),
        extra: format!("{storage}{}", moto.provider_config("aws-us-east-1")),
    }
}

/// Replicas A and B of `config`, on storage `storage`, in front of `moto`.
fn two_replicas(config: &str, storage: &str, moto: &Moto) -> (Gateway, Gateway) {
    let a = Gateway::start_with(replica_options(config, storage, moto));
    let b = Gateway::start_replica(&a, replica_options(config, storage, moto));
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_keys_and_instances_on_postgres() {
    let server = PostgresServer::start().unwrap();
    let redis = skyport_e2e::redis::RedisServer::start();
    let url = server.create_database("skyport").await.unwrap();
    let moto = Moto::start();
    // acme may run 3 instances at most; cached reads are coherent across replicas.
    let config = skyport_e2e::default_config()
        .replacen(
            "[tenants.acme]\ndepartments = [\"ops\"]",
            "[tenants.acme]\ndepartments = [\"ops\"]\nmax_instances = 3",
            1,
        )
        .replacen("[cache]\n", "[cache]\ncoherence = \"redis\"\n", 1)
        + &format!("\n[redis]\nurl = \"{}\"\n", redis.url());
    assert!(config.contains("max_instances = 3"));
    let (a, b) = two_replicas(&config, &storage(&server, &url), &moto);
    let token = a.token("demo", None, &[]);

    // An access key made on A is listed, and revoked, on B.
    let key = access_key(&a, "demo").await;
    let id = key["access_key_id"].as_str().unwrap();
    let admin = b.token("demo", None, &["admin"]);
    let listed = b.get_json("/admin/keys?tenant=demo", &admin).await;
    assert!(listed.to_string().contains(id), "{listed}");
    assert_eq!(
        b.delete(&format!("/admin/keys/{id}"), &admin)
            .await
            .status(),
        200
    );
    let on_a = a.get_json("/admin/keys?tenant=demo", &admin).await;
    assert!(
        on_a.to_string().contains("revoked_at\":\"20"),
        "A sees B's revocation: {on_a}"
    );

    // An offering added through A is in force on B within its refresh (2 s).
    let big = json!({"description": "A large VM", "blueprint": "single-vm",
                     "params": {"tier": "prod"},
                     "defaults": {"image": "skyport-tiny", "instance_type": "sp.large"}});
    let put = a
        .client()
        .put(a.url("/admin/offerings/big-vm"))
        .bearer_auth(&admin)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let mut on_b = 0;
    for _ in 0..50 {
        on_b = b
            .get("/admin/offerings/big-vm", &admin)
            .await
            .status()
            .as_u16();
        if on_b == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(on_b, 200, "B serves the offering A added");

    // An instance created through A is seen, stopped and terminated through B.
    let created = a
        .post(
            "/v1/instances?wait=running",
            &token,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro",
                        "region": "aws-us-east-1", "name": "shared"})),
        )
        .await;
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.unwrap();
    let path = format!("/v1/instances/{}", created["id"].as_str().unwrap());
    let seen = b.get_json(&path, &token).await;
    assert_eq!(seen["name"], "shared", "{seen}");
    assert_eq!(seen["state"], "running", "{seen}");
    let stopped = b
        .post(&format!("{path}/stop?wait=stopped"), &token, None)
        .await;
    assert_eq!(stopped.status(), 202);
    let on_a = a.get_json(&path, &token).await;
    assert_eq!(on_a["state"], "stopped", "{on_a}");
    let listed_a = a.get_json("/v1/instances", &token).await;
    let listed_b = b.get_json("/v1/instances", &token).await;
    assert_eq!(listed_a["instances"], listed_b["instances"]);
    assert_eq!(b.delete(&path, &token).await.status(), 200);

    // Eight orders of acme's at once, alternating between the replicas: its quota admits
    // three.
    let acme = a.token("acme", None, &[]);
    let orders = (0..8).map(|i| {
        let replica = if i % 2 == 0 { &a } else { &b };
        let token = &acme;
        async move {
            let r = replica
                .post(
                    "/v1/instances",
                    token,
                    Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro",
                                "region": "aws-us-east-1"})),
                )
                .await;
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    let answers = futures::future::join_all(orders).await;
    let admitted = answers.iter().filter(|(status, _)| *status == 202).count();
    assert_eq!(admitted, 3, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 202) {
        assert!(
            *status == 409 && body.contains("quota exceeded: max_instances is 3"),
            "{status} {body}"
        );
    }
    let live: Vec<Value> = b.get_json("/v1/instances", &acme).await["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] != "terminated")
        .cloned()
        .collect();
    assert_eq!(live.len(), 3, "{live:?}");

    // A replica died part-way through a deployment: its journal says `creating`, and the
    // primary it had made carries the deployment's token. The next replica to start
    // terminates that instance and removes the journal.
    let made = live[0]["id"].as_str().unwrap().to_string();
    let journal = json!({"id": "d-00000000000000042", "tenant": "acme", "department": null,
        "offering": "web-dr", "created_at": "2026-01-01T00:00:00.000Z", "resources": [],
        "status": "creating", "planned": ["primary", "standby"]});
    server
        .execute(
            "skyport",
            &format!(
                "UPDATE instances SET client_token = 'skyport-deployment:d-00000000000000042:primary'
                 WHERE id = '{made}';
                 INSERT INTO deployments (id, tenant, created_at, record, status)
                 VALUES ('d-00000000000000042', 'acme', '2026-01-01T00:00:00.000Z', '{journal}', 'creating');"
            ),
        )
        .await
        .unwrap();
    let c = Gateway::start_replica(&a, replica_options(&config, &storage(&server, &url), &moto));
    let path = format!("/v1/instances/{made}");
    let (mut state, mut deployments) = (Value::Null, Value::Null);
    for _ in 0..100 {
        state = a.get_json(&path, &acme).await["state"].clone();
        deployments = b.get_json("/v1/deployments", &acme).await["deployments"].clone();
        let terminated = state == "terminated" || state == "shutting-down";
        if terminated && deployments == json!([]) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        state == "terminated" || state == "shutting-down",
        "{state}\n{}",
        c.log()
    );
    assert_eq!(deployments, json!([]), "the journal is removed");
    assert!(c
        .log()
        .contains("part-made deployments of an earlier run undone"));

    // Reads cached on B (DescribeInstances, 2 s) never outlive a write through A: the
    // write answers once B holds its epoch, and a cached read on B costs no Redis call.
    // Then B is stalled (SIGSTOP) during a write: A answers without B's acknowledgement,
    // and B, resumed, still does not answer from before the write.
    let demo_key = access_key(&a, "demo").await;
    let said = skyport_e2e::ec2::scenario(
        &a,
        "coherence",
        json!({"key": demo_key, "region": "aws-us-east-1", "stall_pid": b.pid(),
               "other_endpoint": format!("https://{}", b.api)}),
    );
    assert!(said.contains("coherent after 10 writes"), "{said}");
    assert!(
        a.log().contains("not every replica acknowledged a write"),
        "A waited for the stalled B: {}",
        a.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refuses_a_newer_schema_and_fails_closed_without_its_database() {
    let mut server = PostgresServer::start().unwrap();
    let url = server.create_database("skyport").await.unwrap();
    let section = storage(&server, &url);
    let options = || GatewayOptions {
        config: None,
        extra: section.clone(),
    };
    let gw = Gateway::start_with(options());
    let token = gw.token("demo", None, &[]);
    let admin = gw.token("demo", None, &["admin"]);

    // PostgreSQL stopped: a write fails closed with a problem saying so, and nothing is
    // half-made: once PostgreSQL is back the same write succeeds.
    server.stop();
    let refused = gw
        .post("/admin/keys", &admin, Some(json!({"tenant": "demo"})))
        .await;
    let problem = expect_problem(refused, 503).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("database is unavailable"),
        "{problem}"
    );
    // Reads that need no stored state keep working; a read of stored state fails closed.
    assert_eq!(gw.get("/v1/regions", &token).await.status(), 200);
    let listed = expect_problem(gw.get("/v1/instances", &token).await, 503).await;
    assert!(
        listed["detail"].as_str().unwrap().contains("retry shortly"),
        "{listed}"
    );
    server.resume().unwrap();
    let mut created = 0;
    for _ in 0..50 {
        let r = gw
            .post("/admin/keys", &admin, Some(json!({"tenant": "demo"})))
            .await;
        if r.status() == 201 {
            created += 1;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(created, 1, "the write succeeds once PostgreSQL is back");
    let keys = gw.get_json("/admin/keys?tenant=demo", &admin).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(gw.get("/v1/regions", &token).await.status(), 200);

    // A newer Skyport migrated the database: a replica refuses to start, saying why.
    drop(gw);
    server
        .execute(
            "skyport",
            "INSERT INTO skyport_schema_migrations (version, description) VALUES (9999, 'future')",
        )
        .await
        .unwrap();
    let refused = Gateway::try_start(options())
        .err()
        .expect("a newer schema is refused");
    assert!(
        refused.contains("newer than this Skyport knows"),
        "{refused}"
    );
}

/// Sends `per_second` requests a second for `seconds`, alternating between `replicas` as
/// an L4 balancer would; (admitted, throttled, other statuses, elapsed seconds).
async fn load(
    replicas: &[&Gateway],
    token: &str,
    per_second: u32,
    seconds: u32,
) -> (u32, u32, Vec<u16>, f64) {
    let total = per_second * seconds;
    let clients: Vec<(reqwest::Client, String)> = replicas
        .iter()
        .map(|r| (r.client(), r.url("/v1/whoami")))
        .collect();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1) / per_second);
    let started = std::time::Instant::now();
    let mut sent = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let (client, url) = clients[i as usize % clients.len()].clone();
        let request = client.get(url).bearer_auth(token).send();
        sent.push(tokio::spawn(async move {
            request.await.map_or(0, |r| r.status().as_u16())
        }));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (mut admitted, mut throttled, mut other) = (0, 0, Vec::new());
    for status in sent {
        match status.await.unwrap() {
            200 => admitted += 1,
            429 => throttled += 1,
            s => other.push(s),
        }
    }
    (admitted, throttled, other, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_on_redis_hold_across_replicas_and_degrade_to_a_share() {
    let mut redis = skyport_e2e::redis::RedisServer::start();
    // acme: 20 requests/s, burst 20, shared by both replicas through Redis.
    let config = skyport_e2e::default_config()
        .replacen(
            "[tenants.acme]\ndepartments = [\"ops\"]",
            "[tenants.acme]\ndepartments = [\"ops\"]\nrequests_per_second = 20\nburst = 20",
            1,
        )
        .replacen("[limits]\n", "[limits]\nbackend = \"redis\"\n", 1);
    let redis_section = format!("\n[redis]\nurl = \"{}\"\n", redis.url());
    let options = || GatewayOptions {
        config: Some(config.clone()),
        extra: redis_section.clone(),
    };
    let a = Gateway::start_with(options());
    let b = Gateway::start_replica(&a, options());
    let acme = a.token("acme", None, &[]);

    // Twice the limit for 10 s, alternating: admitted within 2% of rate x time + burst.
    let (admitted, throttled, other, elapsed) = load(&[&a, &b], &acme, 40, 10).await;
    assert!(other.is_empty(), "{other:?}");
    let expected = 20.0 * elapsed + 20.0;
    let off = (f64::from(admitted) - expected).abs() / expected;
    eprintln!("shared buckets: admitted {admitted}, expected {expected:.1} ({elapsed:.2} s)");
    assert!(
        off <= 0.02,
        "admitted {admitted} (throttled {throttled}) in {elapsed:.2} s; expected {expected:.0}"
    );

    // Redis stopped: no 5xx; each replica keeps its share (half), so both together admit
    // at most 1.1 x the limit.
    redis.stop();
    let (admitted, _, other, elapsed) = load(&[&a, &b], &acme, 40, 5).await;
    assert!(other.is_empty(), "no 5xx while Redis is down: {other:?}");
    let limit = 20.0 * elapsed + 20.0;
    eprintln!("Redis down: admitted {admitted}, limit {limit:.1} ({elapsed:.2} s)");
    assert!(
        f64::from(admitted) <= 1.1 * limit,
        "admitted {admitted} in {elapsed:.2} s without Redis; the limit is {limit:.0}"
    );
    assert!(admitted > 0, "the local share admits");
    assert!(a.log().contains("rate limits: Redis failed"), "{}", a.log());

    // A replica started while Redis is down starts, serves its share, and connects once
    // Redis answers.
    let c = Gateway::start_replica(&a, options());
    assert_eq!(c.get("/v1/whoami", &acme).await.status(), 200);
    assert!(c.log().contains("Redis does not answer"), "{}", c.log());

    // Redis back: the shared buckets serve again.
    redis.resume();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(a.get("/v1/whoami", &acme).await.status(), 200);
    assert!(c.log().contains("Redis answers now"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_installation_migrates_to_postgres_whole() {
    // A gateway on the embedded SQLite storage, with a key and a catalog change.
    let mut sqlite = Gateway::start();
    let key = access_key(&sqlite, "demo").await;
    let admin = sqlite.token("demo", None, &["admin"]);
    let plan = json!({"offerings": ["dev-vm"], "max_instances": 2});
    let put = sqlite
        .client()
        .put(sqlite.url("/admin/plans/migrated"))
        .bearer_auth(&admin)
        .json(&plan)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    sqlite.signal(skyport_e2e::Signal::TERM);
    assert_eq!(
        sqlite.wait_exit(std::time::Duration::from_secs(30)),
        Some(0)
    );

    let server = PostgresServer::start().unwrap();
    let url = server.create_database("migrated").await.unwrap();
    let config_path = sqlite.state_dir.join("postgres.toml");
    std::fs::write(
        &config_path,
        skyport_e2e::default_config() + &storage(&server, &url),
    )
    .unwrap();
    let migrate = || {
        std::process::Command::new(skyport_e2e::skyport_bin())
            .args(["storage", "migrate", "--config"])
            .arg(&config_path)
            .arg("--from")
            .arg(&sqlite.state_dir)
            .output()
            .unwrap()
    };
    let out = migrate();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("access_keys      1 rows"), "{said}");
    assert!(said.contains("catalog_objects  1 rows"), "{said}");

    // A gateway on PostgreSQL serves what the SQLite one had.
    let pg = Gateway::start_replica(
        &sqlite,
        GatewayOptions {
            config: None,
            extra: storage(&server, &url),
        },
    );
    let id = key["access_key_id"].as_str().unwrap();
    let keys = pg.get_json("/admin/keys?tenant=demo", &admin).await;
    assert!(keys.to_string().contains(id), "{keys}");
    let plans = pg.get_json("/admin/plans", &admin).await;
    assert!(plans.to_string().contains("migrated"), "{plans}");

    // Again: refused, the database is not empty; nothing changes.
    let again = migrate();
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("already holds"), "{why}");
    let keys = pg.get_json("/admin/keys?tenant=demo", &admin).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
}

/// Whether `gw` has logged that it syncs `provider`'s inventory.
fn syncs(gw: &Gateway, provider: &str) -> bool {
    gw.log().lines().any(|l| {
        l.contains("inventory sync: this replica syncs the provider") && l.contains(provider)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_syncs_a_shared_provider_and_another_takes_over_when_it_dies() {
    let server = PostgresServer::start().unwrap();
    let url = server.create_database("skyport").await.unwrap();
    let moto = Moto::start();
    // Inventory syncs every second: a lease lasts 3 s unrenewed.
    let shipped = skyport_e2e::default_config();
    let config = shipped.replacen("sync_interval_secs = 5", "sync_interval_secs = 1", 1);
    assert_ne!(config, shipped);
    let (a, b) = two_replicas(&config, &storage(&server, &url), &moto);
    let mut one = false;
    for _ in 0..50 {
        if syncs(&a, "aws-us-east-1") || syncs(&b, "aws-us-east-1") {
            one = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(one, "a replica syncs the provider:\n{}", a.log());
    // A few more passes: still exactly one of them.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (on_a, on_b) = (syncs(&a, "aws-us-east-1"), syncs(&b, "aws-us-east-1"));
    assert!(on_a != on_b, "exactly one replica syncs: a={on_a} b={on_b}");

    // The syncing replica dies: the other takes over once its lease (3 s) expires.
    let (survivor, dead) = if on_a { (b, a) } else { (a, b) };
    drop(dead);
    let mut taken = false;
    for _ in 0..100 {
        if syncs(&survivor, "aws-us-east-1") {
            taken = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(taken, "the survivor takes over:\n{}", survivor.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_is_shared_and_keeps_what_it_acknowledged_while_postgres_was_down() {
    let mut server = PostgresServer::start().unwrap();
    let url = server.create_database("skyport").await.unwrap();
    let config = with_shared_ledger(&skyport_e2e::default_config(), &server, &url);
    let options = || GatewayOptions {
        config: Some(config.clone()),
        extra: storage(&server, &url),
    };
    let a = Gateway::start_with(options());
    let b = Gateway::start_replica(&a, options());
    let demo = a.token("demo", None, &[]);
    let admin = a.token("acme", None, &["admin"]);
    let bills_path = bills_path();

    for i in 0..12 {
        let replica = if i % 3 == 0 { &a } else { &b };
        assert_eq!(replica.get("/v1/whoami", &demo).await.status(), 200);
    }
    let mut counted = 0;
    for _ in 0..100 {
        counted = bill_of(&a.get_json(&bills_path, &admin).await, "demo").0;
        if counted >= 12 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(counted, 12, "both replicas' requests in one ledger");
    let (_, from_a) = bill_of(&a.get_json(&bills_path, &admin).await, "demo");
    let (_, from_b) = bill_of(&b.get_json(&bills_path, &admin).await, "demo");
    assert_eq!(
        from_a.to_string(),
        from_b.to_string(),
        "the same bill from either replica"
    );

    // PostgreSQL goes away: A keeps answering and acknowledges its requests' events from
    // its outbox; once PostgreSQL is back they reach the shared ledger, each once.
    server.stop();
    for _ in 0..3 {
        assert_eq!(a.get("/v1/whoami", &demo).await.status(), 200);
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    server.resume().unwrap();
    for _ in 0..150 {
        counted = bill_of(&b.get_json(&bills_path, &admin).await, "demo").0;
        if counted >= 15 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (counted, _) = bill_of(&b.get_json(&bills_path, &admin).await, "demo");
    assert_eq!(counted, 15, "none lost, none doubled\n{}", a.log());
    assert!(
        a.log().contains("keeping events in the outbox"),
        "{}",
        a.log()
    );
}
