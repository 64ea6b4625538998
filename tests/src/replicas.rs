//! Replicas sharing their state on a PostgreSQL server of the test's own: the
//! configuration sections that put a gateway's stores and its metering ledger there, and
//! reading a tenant's bill from the operators' view.

use serde_json::Value;
use skyport_store_postgres::testkit::PostgresServer;

/// The `[storage]` section for database `url` of `server`.
pub fn storage(server: &PostgresServer, url: &str) -> String {
    format!(
        "\n[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\npassword_file = \"{}\"\n",
        server.password_file().display()
    )
}

/// `config` with the metering plugin's ledger in database `url` of `server` (shared by
/// the replicas), and tenant acme an operator tenant, so that its operators read bills
/// without adding requests to demo's.
pub fn with_shared_ledger(config: &str, server: &PostgresServer, url: &str) -> String {
    let shipped = "file = \"libskyport_metering.so\"\n";
    let on_postgres = format!(
        "file = \"libskyport_metering.so\"\nconfig = {{ ledger = {{ backend = \"postgres\", \
         url = \"{url}\", password_file = \"{}\" }} }}\n",
        server.password_file().display()
    );
    assert!(
        config.contains(shipped),
        "the shipped metering plugin changed"
    );
    let config = config.replacen(shipped, &on_postgres, 1).replacen(
        "[tenants.acme]\n",
        "[tenants.acme]\noperator = true\n",
        1,
    );
    assert!(config.contains("[tenants.acme]\noperator = true\n"));
    config
}

/// Tenant `tenant`'s bill within `bills` (an `/admin/bills` answer), and the API
/// requests it counts.
pub fn bill_of(bills: &Value, tenant: &str) -> (u64, Value) {
    let bill = bills["bills"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["tenant"] == tenant)
        .cloned()
        .unwrap_or(Value::Null);
    let requests = bill["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|line| line["sku"] == "api.requests")
        .filter_map(|line| {
            line["description"]
                .as_str()?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    (requests, bill)
}

/// `/admin/bills` for the current period.
pub fn bills_path() -> String {
    let now = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
    format!("/admin/bills?period={}", &now[..7])
}
