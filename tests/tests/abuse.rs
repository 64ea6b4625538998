//! The abuse suite: a running gateway attacked as an outsider and as a tenant would, each
//! attack bounded by a limit of `[server]` (set low here so that each takes seconds), and
//! a well-behaved tenant served throughout.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use skyport_e2e::ec2::Moto;
use skyport_e2e::{default_config, rss_kb, Gateway, GatewayOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The embedded configuration with low connection and body limits.
fn limited_config() -> String {
    let mut config = default_config();
    for (shipped, low) in [
        ("# max_connections = 16384", "max_connections = 64"),
        (
            "max_connections_per_peer = 512",
            "max_connections_per_peer = 16",
        ),
        ("handshake_timeout_secs = 10", "handshake_timeout_secs = 2"),
        ("idle_timeout_secs = 60", "idle_timeout_secs = 2"),
        ("body_read_timeout_secs = 30", "body_read_timeout_secs = 4"),
        (
            "max_buffered_body_bytes = 67108864",
            "max_buffered_body_bytes = 2097152",
        ),
    ] {
        assert!(config.contains(shipped), "{shipped}");
        config = config.replace(shipped, low);
    }
    config
}

fn limited_gateway() -> Gateway {
    Gateway::start_with(GatewayOptions {
        config: Some(limited_config()),
        ..Default::default()
    })
}

/// A TCP connection to `api` from another loopback address (another peer).
async fn connect_from(peer: &str, api: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{peer}:0").parse().unwrap()).unwrap();
    socket.connect(api).await.unwrap()
}

/// Whether the gateway closes `stream` within `within` (end of stream or reset).
async fn closed_within(stream: &mut (impl AsyncReadExt + Unpin), within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn served(gw: &Gateway, token: &str) {
    let r = gw.get("/v1/regions", token).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn silent_and_idle_connections_are_capped_per_peer_and_closed() {
    let gw = limited_gateway();
    let token = gw.token("acme", None, &[]);
    served(&gw, &token).await;

    // 40 connections from one peer that never say a word: 16 are held (until the
    // handshake deadline), the rest are closed at once.
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(connect_from("127.0.0.2", gw.api).await);
    }
    let mut closed_at_once = 0;
    for stream in silent.iter_mut() {
        if closed_within(stream, Duration::from_millis(300)).await {
            closed_at_once += 1;
        }
    }
    assert!(
        closed_at_once >= 24,
        "{closed_at_once} of 40 closed at once"
    );
    // Another peer is served meanwhile, and health answers.
    served(&gw, &token).await;
    let health = reqwest::get(format!("http://{}/healthz", gw.metrics))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Past the handshake deadline every silent one is gone.
    for stream in silent.iter_mut() {
        assert!(closed_within(stream, Duration::from_secs(6)).await);
    }

    // A handshake and then nothing: closed once idle.
    let mut quiet = gw.tls_connect(None).await;
    assert!(closed_within(&mut quiet, Duration::from_secs(6)).await);

    // HTTP/2: the preface and settings, then nothing (pings move bytes, but serve no
    // request): closed once idle.
    let mut h2 = gw.tls_connect(None).await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    assert!(closed_within(&mut h2, Duration::from_secs(6)).await);

    // HTTP/1 keep-alive: one request answered, then idle: closed.
    let mut kept = gw.tls_connect(None).await;
    kept.write_all(
        format!(
            "GET /v1/regions HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(closed_within(&mut kept, Duration::from_secs(6)).await);

    let metrics = gw.metrics_text().await;
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("skyport_connections_refused_total{reason=\"peer\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refused >= 24, "{metrics}");
    served(&gw, &token).await;
}

#[tokio::test]
async fn connections_that_stall_their_handshake_keep_no_one_else_waiting() {
    let gw = limited_gateway();
    let token = gw.token("demo", None, &[]);
    // From two other peers: 12 connections that send nothing, and 12 that send the first
    // bytes of a ClientHello and stop, each held until the 2 s handshake deadline.
    let mut stalled = Vec::new();
    for _ in 0..12 {
        stalled.push(connect_from("127.0.0.3", gw.api).await);
        let mut half = connect_from("127.0.0.4", gw.api).await;
        half.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            .await
            .unwrap();
        stalled.push(half);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A new connection meanwhile: its handshake and request are not kept waiting.
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let mut fresh = gw.tls_connect(None).await;
        fresh
            .write_all(
                format!(
                    "GET /v1/regions HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut head = [0u8; 12];
        fresh.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "a new connection took {took:?}"
        );
    }
    for stream in stalled.iter_mut() {
        assert!(closed_within(stream, Duration::from_secs(6)).await);
    }
}

#[tokio::test]
async fn an_address_that_reconnects_in_a_loop_is_held_to_its_rate() {
    let config = limited_config()
        .replace(
            "new_connections_per_peer_per_sec = 64",
            "new_connections_per_peer_per_sec = 10",
        )
        .replace(
            "max_connections_per_peer = 16",
            "max_connections_per_peer = 64",
        );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let token = gw.token("demo", None, &[]);
    // 40 connections at once from one address: 20 (its burst, twice its rate) reach their
    // handshake, the rest are closed at once, before any TLS work.
    let mut opened = Vec::new();
    for _ in 0..40 {
        opened.push(connect_from("127.0.0.5", gw.api).await);
    }
    let closed = futures::future::join_all(
        opened
            .iter_mut()
            .map(|stream| closed_within(stream, Duration::from_millis(300))),
    )
    .await;
    let closed_at_once = closed.iter().filter(|closed| **closed).count();
    assert!(
        (18..=20).contains(&closed_at_once),
        "{closed_at_once} of 40 closed at once"
    );
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("skyport_connections_refused_total{reason=\"peer_rate\"}"),
        "{metrics}"
    );
    // Other addresses are served meanwhile; so is this one once its rate allows.
    served(&gw, &token).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut again = connect_from("127.0.0.5", gw.api).await;
    assert!(!closed_within(&mut again, Duration::from_millis(300)).await);
}

/// Sends `request` (a head, and as much of its body as the test likes) on a fresh TLS
/// connection; the status line that comes back.
async fn status_after_head(
    gw: &Gateway,
    request: impl AsRef<[u8]>,
    wait: Duration,
) -> Option<String> {
    let mut stream = gw.tls_connect(None).await;
    stream.write_all(request.as_ref()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    Some(text.lines().next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn bodies_are_refused_before_they_are_read_and_read_within_a_deadline_and_a_budget() {
    let gw = limited_gateway();
    let token = gw.token("acme", None, &[]);

    // The EC2 door refuses an unsigned request, and an unknown access key, without
    // waiting for the megabyte of body it announces.
    let unsigned = "POST / HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000000\r\n\r\n".to_string();
    let status = status_after_head(&gw, unsigned, Duration::from_secs(5)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 401 Unauthorized"));
    let now = time_now();
    let unknown = format!(
        "POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000000\r\nx-amz-date: {now}\r\n\
         authorization: AWS4-HMAC-SHA256 Credential=AKIANOSUCHKEY0000000/{}/local-1/ec2/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={}\r\n\r\n",
        &now[..8],
        "0".repeat(64)
    );
    let status = status_after_head(&gw, unknown.clone(), Duration::from_secs(5)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 401 Unauthorized"));
    // Nor is a client that waits for `100 Continue` asked for its body (another unknown
    // key: one the gateway has to look up, not one it has just refused).
    let expecting = unknown
        .replacen("AKIANOSUCHKEY0000000", "AKIANOSUCHKEY0000001", 1)
        .replacen("\r\n\r\n", "\r\nexpect: 100-continue\r\n\r\n", 1);
    let status = status_after_head(&gw, expecting, Duration::from_secs(5)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 401 Unauthorized"));

    // A body declared past the limit: 413 at once.
    let large = format!(
        "POST /v1/instances HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 5000000\r\n\r\n"
    );
    let status = status_after_head(&gw, large, Duration::from_secs(5)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 413 Payload Too Large"));

    // Bodies are charged with the bytes that have arrived: eight bodies announcing a
    // megabyte each (4 MiB, twice the budget) that send a byte and then nothing hold
    // almost nothing, so a whole body is read meanwhile; they get 408 at their 4 s deadline.
    let create = |declared: usize, sent: usize| {
        let mut request = format!(
            "POST /v1/instances HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
        )
        .into_bytes();
        request.resize(request.len() + sent, b' ');
        request
    };
    let trickles =
        (0..8).map(|_| status_after_head(&gw, create(1 << 20, 1), Duration::from_secs(10)));
    let whole = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let json = format!("{{\"pad\": \"{}\"}}", " ".repeat(300_000));
        let mut body = create(json.len(), 0);
        body.extend_from_slice(json.as_bytes());
        status_after_head(&gw, body, Duration::from_secs(3)).await
    };
    let (trickled, whole) = tokio::join!(futures::future::join_all(trickles), whole);
    assert_eq!(whole.as_deref(), Some("HTTP/1.1 400 Bad Request"));
    for status in trickled {
        assert_eq!(status.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    }

    // Two bodies that send 0.95 MiB each and then stall hold most of the 2 MiB budget: a
    // third whose bytes would go past it waits 2 s for room, then gets 503, before the
    // first two reach their 4 s deadline.
    let stalled = |after: u64| {
        let request = create(1 << 20, 1_000_000);
        let gw = &gw;
        async move {
            tokio::time::sleep(Duration::from_millis(after)).await;
            status_after_head(gw, request, Duration::from_secs(10)).await
        }
    };
    let third = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let started = std::time::Instant::now();
        let status = status_after_head(&gw, create(400_000, 400_000), Duration::from_secs(5)).await;
        (status, started.elapsed())
    };
    let (first, second, (third, waited)) = tokio::join!(stalled(0), stalled(200), third);
    assert_eq!(third.as_deref(), Some("HTTP/1.1 503 Service Unavailable"));
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(3100),
        "503 after {waited:?}"
    );
    assert_eq!(first.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    assert_eq!(second.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    served(&gw, &token).await;
}

#[tokio::test]
async fn an_http2_flood_of_large_bodies_stays_within_the_body_budget() {
    let gw = limited_gateway();
    let acme = gw.token("acme", None, &[]);
    let demo = gw.token("demo", None, &[]);
    served(&gw, &demo).await;
    let before = rss_kb(gw.pid());
    // 150 streams on one HTTP/2 connection, each with a body of a megabyte.
    let client = gw.http2_client();
    let body = format!(r#"{{"pad": "{}"}}"#, "x".repeat((1 << 20) - 16));
    assert!(body.len() < 1 << 20);
    let flood = (0..150).map(|_| {
        client
            .post(gw.url("/v1/instances"))
            .bearer_auth(&acme)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    });
    let answers = futures::future::join_all(flood).await;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for answer in answers {
        let status = answer.expect("every stream is answered").status().as_u16();
        *statuses.entry(status).or_default() += 1;
    }
    // Each answered: refused as a body (400), by the body deadline when the flood's own
    // flow control held it past 4 s (408), by the tenant's rate limit (429), or for want
    // of room (503); none left hanging or dropped.
    assert!(
        statuses.keys().all(|s| [400, 408, 429, 503].contains(s)),
        "{statuses:?}"
    );
    let grown = rss_kb(gw.pid()).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the gateway grew by {grown} kB: {statuses:?}"
    );
    served(&gw, &demo).await;
}

#[tokio::test]
async fn a_tenant_with_slow_requests_holds_only_its_share() {
    let config = limited_config().replace(
        "max_concurrent_requests = 256",
        "max_concurrent_requests = 2",
    );
    assert!(config.contains("max_concurrent_requests = 2"));
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let acme = gw.token("acme", None, &[]);
    let demo = gw.token("demo", None, &[]);
    // Two of acme's requests whose bodies never come hold both of its places...
    let slow = || {
        let head = format!(
            "POST /v1/instances HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {acme}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
        );
        let gw = &gw;
        async move { status_after_head(gw, head, Duration::from_secs(10)).await }
    };
    let during = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // ...so a third is refused at once, while another tenant is served.
        let third = gw.get("/v1/regions", &acme).await.status().as_u16();
        let other = gw.get("/v1/regions", &demo).await.status().as_u16();
        (third, other)
    };
    let (first, second, (third, other)) = tokio::join!(slow(), slow(), during);
    assert_eq!((third, other), (429, 200));
    assert_eq!(first.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    assert_eq!(second.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    // Once they are answered, acme is served again.
    served(&gw, &acme).await;
}

#[tokio::test]
async fn concurrent_orders_never_pass_a_quota_together() {
    let moto = Moto::start();
    let config = default_config().replacen(
        "[tenants.acme]\ndepartments = [\"ops\"]",
        "[tenants.acme]\ndepartments = [\"ops\"]\nmax_instances = 1",
        1,
    );
    assert!(config.contains("max_instances = 1"));
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra: moto.provider_config("aws-us-east-1"),
    });
    let acme = gw.token("acme", None, &[]);
    let order = serde_json::json!({
        "image": "skyport-tiny", "instance_type": "sp.micro", "region": "aws-us-east-1"
    });
    let answers = futures::future::join_all(
        (0..6).map(|_| gw.post("/v1/instances", &acme, Some(order.clone()))),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| (200..300).contains(*s)).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
    let listed = gw.get_json("/v1/instances", &acme).await;
    assert_eq!(
        listed["instances"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}

#[tokio::test]
async fn bad_tokens_do_not_write_the_log_for_their_sender() {
    use base64::Engine as _;
    let gw = Gateway::start();
    let token = gw.token("acme", None, &[]);
    served(&gw, &token).await;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    // A token naming a key id of 10 KB that no key has.
    let forged = format!(
        "{}.{}.{}",
        b64(serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "k".repeat(10_000)})),
        b64(serde_json::json!({"sub": "x", "tenant": "acme"})),
        "c2lnbmF0dXJl"
    );
    let before = gw.log().len();
    let client = gw.client();
    for _ in 0..10 {
        let sent = (0..50).map(|_| {
            client
                .get(gw.url("/v1/regions"))
                .bearer_auth(&forged)
                .send()
        });
        for answer in futures::future::join_all(sent).await {
            assert_eq!(answer.unwrap().status(), 401);
        }
    }
    served(&gw, &token).await;
    let grown = gw.log().len() - before;
    // 500 refusals of 10 KB each: one short access line apiece, a few refusal lines.
    assert!(grown < 400_000, "the log grew by {grown} bytes");
    assert!(
        !gw.log().contains(&"k".repeat(1_000)),
        "a 10 KB value reached the log"
    );
}

#[tokio::test]
async fn tags_and_names_follow_ec2s_rules_on_the_native_api() {
    let gw = Gateway::start();
    let token = gw.token("acme", None, &[]);
    let many: serde_json::Map<String, serde_json::Value> = (0..10_000)
        .map(|i| (format!("k{i}"), serde_json::json!("v")))
        .collect();
    for (tags, name, says) in [
        (serde_json::Value::Object(many), None, "at most 50 tags"),
        (
            serde_json::json!({"env": {"nested": 1}}),
            None,
            "string value",
        ),
        (
            serde_json::json!({"a\u{0}b": "v"}),
            None,
            "control character",
        ),
        (
            serde_json::json!({"env": "x\u{1b}y"}),
            None,
            "control character",
        ),
        (
            serde_json::json!({"aws:owner": "v"}),
            None,
            "reserved namespace",
        ),
        (
            serde_json::json!({}),
            Some("bell\u{7}"),
            "no control characters",
        ),
    ] {
        let mut order = serde_json::json!({
            "image": "skyport-tiny", "instance_type": "sp.micro", "tags": tags
        });
        if let Some(name) = name {
            order["name"] = name.into();
        }
        let refused =
            skyport_e2e::expect_problem(gw.post("/v1/instances", &token, Some(order)).await, 400)
                .await;
        let detail = refused["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{says}: {detail}");
    }
    let listed = gw.get_json("/v1/instances", &token).await;
    assert_eq!(
        listed["instances"],
        serde_json::json!([]),
        "nothing was created"
    );
}

/// Runs `script` with the test environment's Python (boto3 and sqlite3 at hand).
fn python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(skyport_e2e::ec2::venv_bin("python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn creates_cut_off_by_a_kill_are_adopted_or_removed_at_the_next_start() {
    let moto = Moto::start();
    let mut gw = Gateway::start_with(GatewayOptions {
        extra: moto.provider_config("aws-us-east-1"),
        ..Default::default()
    });
    let demo = gw.token("demo", None, &[]);
    // Two creates recorded, their answers never: the first one's VM was launched (tagged
    // with its idempotency key, as the ec2 provider tags), the second made nothing.
    let (made, nothing) = ("i-00000000000000b01", "i-00000000000000b02");
    let vm = python(
        "import boto3, sys\n\
         ec2 = boto3.client('ec2', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
             aws_access_key_id='moto-test', aws_secret_access_key='moto-test-secret')\n\
         r = ec2.run_instances(ImageId='ami-03cf127a', InstanceType='t2.micro', MinCount=1, MaxCount=1,\n\
             TagSpecifications=[{'ResourceType': 'instance', 'Tags': [\n\
                 {'Key': 'skyport:idempotency-key', 'Value': sys.argv[2]}]}])\n\
         print(r['Instances'][0]['InstanceId'])",
        &[&moto.endpoint, made],
    );
    let db = gw.state_dir.join("skyport.db");
    python(
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1], timeout=10)\n\
         for i in sys.argv[2:]: c.execute(\"INSERT INTO instances (id, tenant, provider, region, image, instance_type, state, created_at) \
                 VALUES (?, 'demo', 'aws-us-east-1', 'aws-us-east-1', 'skyport-tiny', 'sp.micro', 'pending', '2026-12-05T00:00:00.000Z')\", (i,))\n\
         c.commit()",
        &[db.to_str().unwrap(), made, nothing],
    );
    // The gateway dies and starts again.
    gw.kill9_and_restart();
    let mut adopted = serde_json::Value::Null;
    for _ in 0..100 {
        adopted = gw.get_json(&format!("/v1/instances/{made}"), &demo).await;
        if adopted["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(adopted["state"], "running", "{adopted}");
    // The recovery goes through the creates in turn: the second is removed soon after.
    let mut gone = 0;
    for _ in 0..100 {
        gone = gw
            .get(&format!("/v1/instances/{nothing}"), &demo)
            .await
            .status()
            .as_u16();
        if gone == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gone, 404);
    assert!(
        gw.log()
            .contains("unfinished create recovered: its VM is adopted"),
        "{}",
        gw.log()
    );
    // Adopted, it can be terminated like any instance (its VM with it).
    let r = gw.delete(&format!("/v1/instances/{made}"), &demo).await;
    assert!(r.status().is_success(), "{}", r.status());
    let state = python(
        "import boto3, sys\n\
         ec2 = boto3.client('ec2', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
             aws_access_key_id='moto-test', aws_secret_access_key='moto-test-secret')\n\
         r = ec2.describe_instances(InstanceIds=[sys.argv[2]])\n\
         print(r['Reservations'][0]['Instances'][0]['State']['Name'])",
        &[&moto.endpoint, &vm],
    );
    assert!(
        ["shutting-down", "terminated"].contains(&state.as_str()),
        "{state}"
    );
}

/// `YYYYMMDDTHHMMSSZ` now.
fn time_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y%m%dT%H%M%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_new_state_directory_is_private_and_its_secrets_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let parent = skyport_e2e::temp_state_dir("private");
    let state = parent.join("fresh").join("state");
    let config = parent.join("skyport.toml");
    std::fs::write(&config, default_config()).unwrap();
    let mut child = std::process::Command::new(skyport_e2e::skyport_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = (0..1200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        state.join("listen.json").exists()
    });
    let mode = |p: &str| {
        std::fs::metadata(state.join(p))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let modes: Vec<(&str, u32)> = [
        "",
        "certs",
        "certs/server-key.pem",
        "certs/jwt-signing-key.pem",
        "skyport.db",
    ]
    .into_iter()
    .map(|p| (p, if ready { mode(p) } else { 0 }))
    .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "the gateway did not start on a new state directory");
    for (path, mode) in modes {
        let wanted = if path.is_empty() || path == "certs" {
            0o700
        } else {
            0o600
        };
        assert_eq!(mode, wanted, "{path:?} is {mode:o}");
    }
    // Every directory it made on the way is private too.
    assert_eq!(
        std::fs::metadata(parent.join("fresh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let _ = std::fs::remove_dir_all(&parent);
}
