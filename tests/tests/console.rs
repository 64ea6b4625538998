//! The web console in a real browser (Debian's headless Chromium over WebDriver): a
//! tenant signs in with a development link, orders `dev-vm` with its price and placement
//! shown first, watches it reach `running`, and stops it; a hostile tag renders inert;
//! another tenant's instance is out of reach, also by editing the URL; a form another site
//! posts is refused; sign-out ends the session; and axe-core finds no serious or critical
//! accessibility violation on any page.
#![forbid(unsafe_code)]

use std::time::Duration;

use serde_json::{json, Value};
use skyport_e2e::browser::{console_link, Browser};
use skyport_e2e::ec2::Moto;
use skyport_e2e::oidc_provider::OidcProvider;
use skyport_e2e::{default_config, expect_problem, run_cli, Gateway, GatewayOptions};

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// A budget for tenant demo, for the budgets page.
const BUDGET: &str = r#"
[[budgets]]
name = "demo-month"
tenant = "demo"
amount = "50.00"
thresholds = ["0.5", "0.8"]
mode = "alert"
"#;

/// The tests of this file run one at a time: each gateway's VM network appearing is an
/// address change on this host, which makes Chromium drop the requests it has in flight.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Every serious or critical axe-core violation on the page, none expected.
async fn assert_accessible(browser: &Browser, page: &str) {
    let violations = browser.accessibility_violations().await;
    assert!(
        violations.is_empty(),
        "{page}: accessibility violations:\n{}",
        violations.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_orders_watches_and_stops_a_vm_in_the_browser() {
    let _one = ONE_AT_A_TIME.lock().await;
    skyport_e2e::assert_guest_image_prepared();
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(default_config() + BUDGET),
        ..Default::default()
    });
    let browser = Browser::start(&gw).await;

    // Signed out: the console says how to sign in.
    browser.goto(&gw.url("/console/")).await;
    browser
        .wait_for("document.querySelector('h1')?.textContent === 'Sign in'")
        .await;
    assert_accessible(&browser, "sign-in").await;
    // The checker itself finds what it should: an unlabelled field.
    browser
        .eval("document.querySelector('main').appendChild(document.createElement('input')) && true")
        .await;
    let found = browser.accessibility_violations().await;
    assert!(found.iter().any(|v| v.starts_with("label")), "{found:?}");
    browser
        .eval("document.querySelector('main input').remove() || true")
        .await;

    // The development link signs in once, into a Secure, HttpOnly, SameSite=Strict cookie.
    browser.sign_in(&gw, "demo", &[]).await;
    browser
        .wait_for("document.querySelector('h1')?.textContent === 'Instances'")
        .await;
    assert_eq!(
        browser.eval("document.cookie").await,
        json!(""),
        "scripts cannot read the session cookie"
    );
    let cookies = browser.client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "__Host-skyport_session")
        .expect("session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.secure(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    let link = console_link(&gw, "demo", &[]);
    let used = gw.client().get(&link).send().await.unwrap();
    assert_eq!(used.url().path(), "/console/", "the link signed in");
    let reused = gw.client().get(&link).send().await.unwrap();
    assert_eq!(reused.status(), 401, "a link opens one session");
    assert!(reused.text().await.unwrap().contains("used already"));
    assert_accessible(&browser, "instances (empty)").await;

    // Order dev-vm: price and placement first, then the order, then its boot.
    browser.goto(&gw.url("/console/#/order")).await;
    browser
        .wait_for("document.querySelector('#order-offering')")
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#order-offering').value")
            .await,
        json!("dev-vm")
    );
    assert_accessible(&browser, "order").await;
    browser.type_into("#order-name", "web-1").await;
    browser
        .type_into("#order-tags", &format!("note={HOSTILE}\nteam=web"))
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#order-submit').disabled")
            .await,
        json!(true),
        "nothing is ordered before its price is shown"
    );
    browser.click("#order-explain").await;
    let shown = browser
        .wait_for("document.querySelector('section[aria-label=\"Price and placement\"] .panel')?.innerText")
        .await;
    let shown = shown.as_str().unwrap();
    assert!(
        shown.contains("local-vmm") && shown.contains("local-1"),
        "{shown}"
    );
    assert!(shown.contains("0.0050 USD per hour"), "{shown}");
    assert_accessible(&browser, "order, explained").await;
    browser.click("#order-submit").await;
    let id = browser
        .wait_for("location.hash.startsWith('#/instances/i-') && location.hash.slice(12)")
        .await;
    let id = id.as_str().unwrap().to_string();
    browser
        .wait_for("document.querySelector('h1')?.textContent === 'web-1'")
        .await;
    // The boot is shown while it runs, and the page sees it end.
    browser
        .wait_for_within(
            "document.querySelector('.state')?.textContent === 'running'",
            Duration::from_secs(120),
        )
        .await;
    assert_accessible(&browser, "instance").await;

    // Its tags, edited on its page.
    browser
        .type_into(
            "#tags-edit",
            &format!("note={HOSTILE}\nteam=web\nowner=ana"),
        )
        .await;
    browser.click("#tags-save").await;
    browser
        .wait_for("document.querySelector('#notice').textContent === 'Tags saved'")
        .await;
    let token = gw.token("demo", None, &[]);
    let tagged = gw.get_json(&format!("/v1/instances/{id}"), &token).await;
    assert_eq!(
        tagged["tags"],
        json!({"note": HOSTILE, "team": "web", "owner": "ana"})
    );

    // The hostile tag is text: no element made of it, no script run.
    browser.goto(&gw.url("/console/#/instances")).await;
    let chip = browser
        .wait_for("[...document.querySelectorAll('.tag')].map(t => t.textContent).find(t => t.startsWith('note='))")
        .await;
    assert_eq!(chip, json!(format!("note={HOSTILE}")));
    assert_eq!(
        browser
            .eval("document.querySelectorAll('img').length")
            .await,
        json!(0)
    );
    assert!(
        browser.client.get_alert_text().await.is_err(),
        "no alert was opened"
    );
    assert_accessible(&browser, "instances").await;

    // The list's filter.
    browser.type_into("#filter-text", "team=web").await;
    browser
        .wait_for("document.querySelector('caption')?.textContent === '1 of 1 instances'")
        .await;
    browser.type_into("#filter-text", "nothing-like-it").await;
    browser
        .wait_for("document.querySelector('caption')?.textContent === '0 of 1 instances'")
        .await;

    // Stop it from its page.
    browser
        .goto(&gw.url(&format!("/console/#/instances/{id}")))
        .await;
    browser.click("button[aria-label='Stop web-1']").await;
    browser
        .wait_for_within(
            "document.querySelector('.state')?.textContent === 'stopped'",
            Duration::from_secs(60),
        )
        .await;
    let stopped = gw.get_json(&format!("/v1/instances/{id}"), &token).await;
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(
        stopped["tags"]["note"], HOSTILE,
        "the tag is stored as typed"
    );

    // The bill: its cost per day drawn, the VM's line, and the FOCUS file.
    browser.goto(&gw.url("/console/#/bill")).await;
    let line = browser
        .wait_for(&format!(
            "[...document.querySelectorAll('td')].some(td => td.textContent === {})",
            json!(id)
        ))
        .await;
    assert_eq!(line, json!(true));
    assert!(
        browser
            .eval("document.querySelectorAll('svg.chart rect.bar').length")
            .await
            .as_u64()
            .unwrap()
            >= 1,
        "a bar for today"
    );
    assert_accessible(&browser, "bill").await;
    let name = browser
        .eval("document.querySelector('#download-focus').getAttribute('download')")
        .await;
    browser.click("#download-focus").await;
    let focus = browser.downloaded(name.as_str().unwrap()).await;
    let header = focus.lines().next().unwrap();
    assert!(
        header.contains("BilledCost") && header.contains("ChargePeriodStart"),
        "{header}"
    );
    assert!(focus.contains(&id), "the VM is in the FOCUS file");

    // Budgets: the burn-down and the forecast.
    browser.goto(&gw.url("/console/#/budgets")).await;
    browser
        .wait_for("document.querySelector('svg.chart polyline.forecast')")
        .await;
    assert_accessible(&browser, "budgets").await;
    for page in ["orders", "deployments"] {
        browser.goto(&gw.url(&format!("/console/#/{page}"))).await;
        browser
            .wait_for("document.querySelector('main table')")
            .await;
        assert_accessible(&browser, page).await;
    }

    // An access key: made, its secret shown once, then revoked.
    browser.goto(&gw.url("/console/#/keys")).await;
    browser.click("#key-create").await;
    let secret = browser
        .wait_for("document.querySelector('#new-key-secret')?.textContent")
        .await;
    let key_id = browser
        .eval("document.querySelector('#new-key-id').textContent")
        .await;
    let (secret, key_id) = (secret.as_str().unwrap(), key_id.as_str().unwrap());
    assert_eq!(secret.len(), 40, "{secret}");
    assert_accessible(&browser, "keys, a key just made").await;
    browser.goto(&gw.url("/console/#/instances")).await;
    browser.goto(&gw.url("/console/#/keys")).await;
    browser
        .wait_for(&format!(
            "document.querySelector('main').innerText.includes({})",
            json!(key_id)
        ))
        .await;
    let page_text = browser.eval("document.body.innerText").await;
    assert!(
        !page_text.as_str().unwrap().contains(secret),
        "the secret is shown once"
    );
    browser
        .click(&format!("button[aria-label='Revoke {key_id}']"))
        .await;
    browser.client.accept_alert().await.unwrap();
    browser
        .wait_for("document.querySelector('main').innerText.includes('revoked 20')")
        .await;
    let keys = gw.get_json("/v1/keys", &token).await;
    assert!(keys["keys"][0]["revoked_at"].is_string(), "{keys}");

    // The keyboard: before the navigation's first link is the skip link, which moves the
    // focus to the page's content (and leaves the route alone); the next Tab reaches the
    // page's first link.
    browser.goto(&gw.url("/console/#/instances")).await;
    browser.wait_for("document.querySelector('table')").await;
    browser
        .eval("document.querySelector('nav a').focus() || true")
        .await;
    let key = |k: &'static str| {
        let browser = &browser;
        async move {
            browser
                .client
                .active_element()
                .await
                .unwrap()
                .send_keys(k)
                .await
                .unwrap();
        }
    };
    key("\u{E008}\u{E004}").await; // Shift+Tab
    assert_eq!(
        browser.eval("document.activeElement.textContent").await,
        json!("Skip to content")
    );
    key("\u{E007}").await; // Enter
    assert_eq!(
        browser.eval("document.activeElement.id").await,
        json!("page")
    );
    assert_eq!(browser.eval("location.hash").await, json!("#/instances"));
    key("\u{E004}").await;
    assert_eq!(
        browser.eval("document.activeElement.textContent").await,
        json!("Order an instance")
    );

    // At 640 px (200% zoom of a 1280-pixel window) and at 360 px, nothing but the tables'
    // own regions scrolls sideways.
    for window in [640, 360] {
        browser.client.set_window_size(window, 800).await.unwrap();
        browser.goto(&gw.url("/console/#/instances")).await;
        browser.wait_for("document.querySelector('table')").await;
        let width = browser
            .eval("document.documentElement.scrollWidth")
            .await
            .as_u64()
            .unwrap();
        let viewport = browser
            .eval("document.documentElement.clientWidth")
            .await
            .as_u64()
            .unwrap();
        assert!(
            width <= viewport,
            "the page is {width} px wide at {viewport} px"
        );
    }

    // Sign out: the cookie no longer opens anything.
    browser.click("header button.link").await;
    browser
        .wait_for("document.querySelector('h1')?.textContent === 'Sign in'")
        .await;
    assert_eq!(browser.fetch_status("/v1/whoami", json!({})).await, 401);

    gw.delete(&format!("/v1/instances/{id}"), &token).await;
    browser.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_sees_only_its_tenant_and_other_sites_cannot_write_with_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    skyport_e2e::assert_guest_image_prepared();
    let gw = Gateway::start();
    let acme = gw.token("acme", None, &[]);
    let theirs = gw.create_running(&acme, "sp.micro").await;
    let theirs = theirs["id"].as_str().unwrap().to_string();

    let browser = Browser::start(&gw).await;
    browser.sign_in(&gw, "demo", &[]).await;
    browser
        .wait_for("document.querySelector('caption')?.textContent === '0 of 0 instances'")
        .await;

    // A console module lost on the way every time (a connection dropped by a network
    // change on this host) leaves the page saying so after three reloads, not at
    // "Loading…"; its Reload button then brings the console up whole.
    // (A query makes each a new document: a change of fragment alone loads nothing.)
    browser.block_urls(&["*/console/assets/keys.js"]).await;
    browser.goto(&gw.url("/console/?lost=always#/keys")).await;
    browser
        .wait_for("document.querySelector('h1')?.textContent === 'The console did not load'")
        .await;
    unblock_and_click_to_keys(&browser).await;
    // Lost once, the module arrives with the reload the page makes by itself.
    browser.block_urls(&["*/console/assets/keys.js"]).await;
    browser.goto(&gw.url("/console/?lost=once#/keys")).await;
    browser.block_urls(&[]).await;
    browser
        .wait_for("document.querySelector('caption')?.textContent === '0 access keys'")
        .await;
    assert_eq!(
        browser
            .eval("performance.getEntriesByType('navigation')[0].type")
            .await,
        "reload"
    );
    // The session unreadable even after the console's repeats: the page says so, and its
    // Try again button reads it again.
    browser.block_urls(&["*/console/session"]).await;
    browser.goto(&gw.url("/console/?lost=session#/keys")).await;
    browser
        .wait_for(
            "document.querySelector('h1')?.textContent === 'The gateway could not be reached'",
        )
        .await;
    unblock_and_click_to_keys(&browser).await;

    // Editing the URL to acme's instance shows the API's refusal, not the instance.
    browser
        .goto(&gw.url(&format!("/console/#/instances/{theirs}")))
        .await;
    let error = browser
        .wait_for("document.querySelector('.error')?.textContent")
        .await;
    assert!(error.as_str().unwrap().contains("not found"), "{error}");
    let text = browser
        .eval("document.querySelector('main').innerText")
        .await;
    assert!(!text.as_str().unwrap().contains("running"), "{text}");
    assert_eq!(
        browser
            .fetch_status(&format!("/v1/instances/{theirs}"), json!({}))
            .await,
        404
    );

    // The page's own write without its CSRF token is refused, and with it goes through.
    let explain = |headers: Value| json!({"method": "POST", "headers": headers, "body": "{\"offering\":\"dev-vm\"}"});
    assert_eq!(
        browser
            .fetch_status("/v1/placement/explain", explain(json!({})))
            .await,
        403
    );
    let csrf = browser
        .client
        .execute_async(
            "const done = arguments[0]; fetch('/console/session').then(r => r.json()).then(s => done(s.csrf_token));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        browser
            .fetch_status(
                "/v1/placement/explain",
                explain(json!({"x-csrf-token": csrf}))
            )
            .await,
        200
    );

    // A form another site posts at the API is refused, and orders nothing.
    let form = format!(
        "data:text/html,<form method=post action='{}' enctype=text/plain>\
         <input name='{{\"offering\":\"dev-vm\",\"x\":\"' value='\"}}'></form>",
        gw.url("/v1/instances")
    );
    browser.goto(&form).await;
    browser
        .client
        .execute("document.forms[0].submit(); return true;", vec![])
        .await
        .unwrap();
    let refused = browser
        .wait_for("location.href.startsWith('https://') && document.body.innerText")
        .await;
    let refused = refused.as_str().unwrap();
    assert!(
        refused.contains("\"status\":401") || refused.contains("\"status\":403"),
        "{refused}"
    );
    let demo = gw.token("demo", None, &[]);
    let listed = gw.get_json("/v1/instances", &demo).await;
    assert_eq!(listed["instances"], json!([]), "nothing was ordered");

    // acme's access key is neither listed nor revocable from demo's session, and acme's
    // VM is not on demo's bill.
    let acme_key = gw.post_json("/v1/keys", &acme, None).await;
    let acme_key = acme_key["access_key_id"].as_str().unwrap().to_string();
    browser.goto(&gw.url("/console/#/keys")).await;
    browser
        .wait_for("document.querySelector('caption')?.textContent === '0 access keys'")
        .await;
    let revoke = json!({"method": "DELETE", "headers": {"x-csrf-token": csrf}});
    assert_eq!(
        browser
            .fetch_status(&format!("/v1/keys/{acme_key}"), revoke)
            .await,
        404
    );
    let listed = gw.get_json("/v1/keys", &acme).await;
    assert!(listed["keys"][0]["revoked_at"].is_null(), "{listed}");
    browser.goto(&gw.url("/console/#/bill")).await;
    browser.wait_for("document.querySelector('p.total')").await;
    let bill_text = browser
        .eval("document.querySelector('main').innerText")
        .await;
    assert!(
        !bill_text.as_str().unwrap().contains(&theirs),
        "{bill_text}"
    );

    // A browser presenting demo's client certificate is signed in by it, and a write
    // another site starts over it is refused.
    let mtls = gw.mtls_client(
        &gw.cert_path("client-demo.pem"),
        &gw.cert_path("client-demo-key.pem"),
    );
    let by_cert: Value = mtls
        .get(gw.url("/console/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_cert["via"], "mtls", "{by_cert}");
    assert_eq!(by_cert["tenant"], "demo", "{by_cert}");
    let write = |site: &'static str| {
        mtls.post(gw.url("/v1/placement/explain"))
            .header("sec-fetch-site", site)
            .json(&json!({"offering": "dev-vm"}))
            .send()
    };
    assert_eq!(write("cross-site").await.unwrap().status(), 403);
    assert_eq!(write("same-origin").await.unwrap().status(), 200);

    // A sign-in link is not an API token, and an API token is not a sign-in link.
    let link = console_link(&gw, "demo", &[]);
    let ticket = link.split("ticket=").nth(1).unwrap();
    expect_problem(gw.get("/v1/whoami", ticket).await, 401).await;
    let refused = gw
        .client()
        .get(gw.url(&format!("/console/signin?ticket={demo}")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    browser.stop().await;
    gw.delete(&format!("/v1/instances/{theirs}"), &acme).await;
}

/// Lets every request through again, clicks the page's one button (Reload, Try again),
/// and waits for the access keys page to come up whole.
async fn unblock_and_click_to_keys(browser: &Browser) {
    browser.block_urls(&[]).await;
    browser.click("main button").await;
    browser
        .wait_for("document.querySelector('caption')?.textContent === '0 access keys'")
        .await;
}

/// The health shown for plugin `name` on the providers page, once it starts with `prefix`.
async fn plugin_health(browser: &Browser, name: &str, prefix: &str) {
    browser
        .wait_for_within(
            &format!(
                "document.querySelector('[data-plugin={}]')?.textContent.startsWith({})",
                json!(name),
                json!(prefix)
            ),
            Duration::from_secs(90),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_the_gateway_from_the_console() {
    let _one = ONE_AT_A_TIME.lock().await;
    skyport_e2e::assert_guest_image_prepared();
    let mut moto = Moto::start();
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(skyport_e2e::config_with_prod_vm_approval()),
        extra: moto.provider_config("aws-us-east-1"),
    });
    let demo = gw.token("demo", None, &[]);
    let browser = Browser::start(&gw).await;
    browser.sign_in(&gw, "ops", &["admin"]).await;
    browser
        .wait_for("document.querySelector('nav a[href=\"#/providers\"]')")
        .await;

    // A plugin turns unhealthy when its cloud goes away, and healthy when it is back.
    browser.goto(&gw.url("/console/#/providers")).await;
    plugin_health(&browser, "aws-us-east-1", "healthy").await;
    assert_accessible(&browser, "providers").await;
    moto.stop();
    plugin_health(&browser, "aws-us-east-1", "unhealthy").await;
    moto.restart();
    plugin_health(&browser, "aws-us-east-1", "healthy").await;
    assert_eq!(
        browser
            .eval("document.querySelector('[data-plugin=\"local-vmm\"]').textContent")
            .await,
        json!("healthy"),
        "the other provider never wavered"
    );

    // The catalog editor: a bad edit shows the API's validation message and changes
    // nothing; a good one is saved.
    browser.goto(&gw.url("/console/#/catalog")).await;
    browser
        .wait_for("document.querySelector('#catalog-body').value.includes('single-vm')")
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#catalog-name').value")
            .await,
        json!("dev-vm")
    );
    assert_accessible(&browser, "catalog").await;
    let original = gw
        .get_json(
            "/admin/offerings/dev-vm",
            &gw.token("ops", None, &["admin"]),
        )
        .await;
    let mut bad = original.clone();
    bad["blueprint"] = json!("no-such-blueprint");
    browser.type_into("#catalog-body", &bad.to_string()).await;
    browser.click("#catalog-save").await;
    let error = browser
        .wait_for("document.querySelector('.error')?.textContent")
        .await;
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("offerings.dev-vm.blueprint: no blueprint 'no-such-blueprint'"),
        "{error}"
    );
    let admin = gw.token("ops", None, &["admin"]);
    assert_eq!(
        gw.get_json("/admin/offerings/dev-vm", &admin).await,
        original
    );
    let mut good = original.clone();
    good["description"] = json!("A small VM, edited in the console");
    browser.type_into("#catalog-body", &good.to_string()).await;
    browser.click("#catalog-save").await;
    browser
        .wait_for("document.querySelector('#notice').textContent === 'Saved offerings dev-vm'")
        .await;
    assert_eq!(
        gw.get_json("/admin/offerings/dev-vm", &admin).await["description"],
        "A small VM, edited in the console"
    );

    // The placement audit finds demo's decision.
    let explained = gw
        .post_json(
            "/v1/placement/explain",
            &demo,
            Some(json!({"offering": "dev-vm"})),
        )
        .await;
    browser.goto(&gw.url("/console/#/placements")).await;
    browser.type_into("#search-tenant", "demo").await;
    browser.click("#search-run").await;
    browser
        .wait_for(&format!(
            "[...document.querySelectorAll('td')].some(td => td.textContent === {})",
            json!(explained["id"])
        ))
        .await;
    assert_accessible(&browser, "placement audit").await;
    let since = |t: &str| format!("/admin/placements?tenant=demo&since={t}");
    let found = gw.get_json(&since("2020-01-01T00:00:00Z"), &admin).await;
    assert_eq!(found["placements"][0]["id"], explained["id"], "{found}");
    let later = gw.get_json(&since("2099-01-01T00:00:00Z"), &admin).await;
    assert_eq!(later["placements"], json!([]));
    expect_problem(gw.get(&since("yesterday"), &admin).await, 400).await;

    // The approval queue: demo's order for prod-vm waits, and is denied with a reason.
    let ordered = gw
        .post_json("/v1/instances", &demo, Some(json!({"offering": "prod-vm"})))
        .await;
    let order = ordered["order"]["id"].as_str().unwrap().to_string();
    browser.goto(&gw.url("/console/#/queue")).await;
    browser
        .click(&format!("button[aria-label='Deny {order}']"))
        .await;
    browser
        .client
        .send_alert_text("not this month")
        .await
        .unwrap();
    browser.client.accept_alert().await.unwrap();
    browser
        .wait_for(&format!(
            "document.querySelector('#notice').textContent === 'Order {order}: denied'"
        ))
        .await;
    let denied = gw.get_json(&format!("/v1/orders/{order}"), &demo).await;
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["reason"], "not this month");
    assert_accessible(&browser, "approval queue").await;

    for page in ["tenants", "webhooks", "sla"] {
        browser.goto(&gw.url(&format!("/console/#/{page}"))).await;
        browser
            .wait_for("document.querySelector('main table')")
            .await;
        assert_accessible(&browser, page).await;
    }
    let sla = browser
        .eval("document.querySelector('main').innerText")
        .await;
    assert!(
        sla.as_str().unwrap().contains("local-vmm / local-1"),
        "{sla}"
    );

    // An approver sees the queue and no other operators' page; a tenant's user sees none,
    // and the API refuses them whatever the page shows.
    browser.click("header button.link").await;
    browser
        .wait_for("document.querySelector('h1')?.textContent === 'Sign in'")
        .await;
    browser.sign_in(&gw, "ops", &["approver"]).await;
    browser.wait_for("document.querySelector('nav a')").await;
    let nav = browser
        .eval("document.querySelector('nav').innerText")
        .await;
    let nav = nav.as_str().unwrap();
    assert!(
        nav.contains("Approval queue") && !nav.contains("Providers"),
        "{nav}"
    );
    assert_eq!(browser.fetch_status("/admin/plugins", json!({})).await, 403);
    browser.goto(&gw.url("/console/#/providers")).await;
    browser
        .wait_for("document.querySelector('h1')?.textContent === 'Not found'")
        .await;
    browser.click("header button.link").await;
    browser
        .wait_for("document.querySelector('h1')?.textContent === 'Sign in'")
        .await;
    browser.sign_in(&gw, "demo", &[]).await;
    browser.wait_for("document.querySelector('nav a')").await;
    let nav = browser
        .eval("document.querySelector('nav').innerText")
        .await;
    assert!(!nav.as_str().unwrap().contains("Approval queue"), "{nav}");
    assert_eq!(browser.fetch_status("/admin/orders", json!({})).await, 403);

    // demo deploys web-dr (a primary and a standby in two regions) from the order page.
    browser.goto(&gw.url("/console/#/order")).await;
    browser
        .wait_for("document.querySelector('#order-offering')")
        .await;
    browser
        .client
        .execute(
            "const s = document.querySelector('#order-offering'); s.value = 'web-dr'; \
             s.dispatchEvent(new Event('change')); return true;",
            vec![],
        )
        .await
        .unwrap();
    browser.type_into("#order-name", "shop").await;
    browser.click("#order-explain").await;
    let shown = browser
        .wait_for("document.querySelector('section[aria-label=\"Price and placement\"] table')?.innerText")
        .await;
    let shown = shown.as_str().unwrap();
    assert!(
        shown.contains("primary") && shown.contains("standby") && shown.contains("aws-us-east-1"),
        "{shown}"
    );
    browser.click("#order-submit").await;
    browser
        .wait_for("location.hash === '#/deployments' && document.querySelector('caption')?.textContent === '1 deployments'")
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let deployed = loop {
        let deployed = gw.get_json("/v1/deployments", &demo).await;
        if deployed["deployments"][0]["status"] != "creating" {
            break deployed;
        }
        assert!(std::time::Instant::now() < deadline, "{deployed}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(deployed["deployments"][0]["status"], "ready", "{deployed}");
    let resources = deployed["deployments"][0]["resources"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(resources.len(), 2, "{deployed}");
    for r in &resources {
        let id = r["instance"].as_str().unwrap();
        assert_eq!(
            gw.delete(&format!("/v1/instances/{id}"), &demo)
                .await
                .status(),
            200
        );
    }
    browser.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_through_the_identity_provider_with_pkce() {
    let _one = ONE_AT_A_TIME.lock().await;
    let idp = OidcProvider::start().await;
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(idp.configure(&default_config())),
        ..Default::default()
    });
    idp.sign_in_as(json!({"tenant": "acme", "dept": "ops", "sub": "ana@example.com"}));
    let browser = Browser::start_trusting(&gw, &[&idp.cert_der]).await;
    browser
        .click_through(
            &gw.url("/console/"),
            "#sign-in-oidc",
            "document.querySelector('h1')?.textContent === 'Instances'",
        )
        .await;
    let who = browser
        .eval("document.querySelector('#who').innerText")
        .await;
    assert!(
        who.as_str()
            .unwrap()
            .contains("ana@example.com · acme / ops"),
        "{who}"
    );
    assert_eq!(browser.fetch_status("/v1/whoami", json!({})).await, 200);

    // The provider saw a PKCE challenge (S256) and, at the token endpoint, its verifier
    // (the last sign-in's: one dropped by a network change on this host is begun again).
    let (authorization, exchange) = idp.seen(|s| {
        assert!(s.exchanges.len() <= s.authorizations.len());
        (
            s.authorizations.last().expect("an authorization").clone(),
            s.exchanges.last().expect("a code exchange").clone(),
        )
    });
    assert_eq!(authorization["code_challenge_method"], "S256");
    assert_eq!(
        authorization["redirect_uri"],
        gw.url("/console/oidc/callback")
    );
    assert!(authorization["scope"].split(' ').any(|s| s == "openid"));
    assert_eq!(exchange.1, 200);
    assert_eq!(exchange.0["code_verifier"].len(), 43);
    assert!(!authorization
        .values()
        .any(|v| v == &exchange.0["code_verifier"]));

    // A code can be exchanged once, and only by the browser that started the sign-in.
    let callback = gw.url(&format!(
        "/console/oidc/callback?code={}&state={}",
        exchange.0["code"], authorization["state"]
    ));
    let replayed = gw.client().get(&callback).send().await.unwrap();
    assert_eq!(replayed.status(), 401);
    assert!(replayed
        .text()
        .await
        .unwrap()
        .contains("did not start here"));
    let forged = gw
        .client()
        .get(&callback)
        .header("cookie", "__Host-skyport_oidc=another-state.verifier")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert!(forged
        .text()
        .await
        .unwrap()
        .contains("state does not match"));

    // With the provider's keys configured, development links are off.
    let state_dir = gw.state_dir.display().to_string();
    let config_file = gw.state_dir.join("skyport.toml").display().to_string();
    let (code, _) = run_cli(&[
        "console",
        "--tenant",
        "demo",
        "--state-dir",
        &state_dir,
        "--config",
        &config_file,
    ]);
    assert_ne!(code, 0, "skyport console refuses");
    let dev = gw.sign(&skyport_e2e::standard_claims("demo"));
    let refused = gw
        .client()
        .get(gw.url(&format!("/console/signin?ticket={dev}")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("links are off"));

    // A provider's user of no configured tenant gets the gateway's refusal in the page.
    browser.click("header button.link").await;
    browser
        .wait_for("document.querySelector('#sign-in-oidc')")
        .await;
    idp.sign_in_as(json!({"tenant": "nobody", "sub": "eve@example.com"}));
    let refusal = browser
        .click_through(
            &gw.url("/console/"),
            "#sign-in-oidc",
            "document.querySelector('[role=alert]')?.textContent",
        )
        .await;
    assert!(
        refusal
            .as_str()
            .unwrap()
            .contains("tenant 'nobody' is not registered"),
        "{refusal}"
    );
    browser.stop().await;
}

/// The session cookie a development link sets (read from the link's own answer).
async fn session_cookie(gw: &Gateway, tenant: &str) -> String {
    let client = gw
        .client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = client
        .get(console_link(gw, tenant, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_idle_and_at_their_longest_lifetime() {
    let _one = ONE_AT_A_TIME.lock().await;
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(
            default_config() + "\n[console]\nidle_timeout_secs = 3\nabsolute_timeout_secs = 5\n",
        ),
        ..Default::default()
    });
    let whoami = |cookie: String| {
        let client = gw.client();
        let url = gw.url("/v1/whoami");
        async move {
            let r = client
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Used every second, a session outlives its 3-second idle timeout...
    let used = session_cookie(&gw, "demo").await;
    for _ in 0..4 {
        assert_eq!(whoami(used.clone()).await.0, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // ...until its 5 seconds are up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, ended) = whoami(used).await;
    assert_eq!(status, 401, "{ended}");
    assert!(ended.contains("longest lifetime"), "{ended}");

    // Left alone for longer than 3 seconds, a session ends.
    let idle = session_cookie(&gw, "demo").await;
    assert_eq!(whoami(idle.clone()).await.0, 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, ended) = whoami(idle).await;
    assert_eq!(status, 401, "{ended}");
    assert!(ended.contains("without use"), "{ended}");

    // An address trying links in a loop is slowed down (429 past its burst); the rest of
    // the console still answers it.
    let client = gw.client();
    let mut answers = Vec::new();
    for _ in 0..40 {
        let r = client
            .get(gw.url("/console/signin?ticket=not-a-ticket"))
            .send()
            .await
            .unwrap();
        let retry_after = r.headers().get("retry-after").cloned();
        answers.push((r.status().as_u16(), retry_after));
    }
    let (first, _) = &answers[0];
    assert_ne!(*first, 429, "the first try is answered on its merits");
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!refused.is_empty(), "{answers:?}");
    assert!(refused
        .iter()
        .all(|(_, after)| after.as_ref().is_some_and(|v| v == "1")));
    let page = client.get(gw.url("/console/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
}
