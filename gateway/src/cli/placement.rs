//! `skyport placement explain`: the placement decision an order by offering would reach,
//! as a table (or the JSON with `--json`), without creating anything.

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::instances::{Client, GatewayArgs};

/// `skyport placement ...`.
#[derive(Debug, Args)]
pub(super) struct PlacementArgs {
    #[command(subcommand)]
    command: PlacementCommand,
    #[command(flatten)]
    gateway: GatewayArgs,
}

#[derive(Debug, Subcommand)]
enum PlacementCommand {
    /// Explain where an order by offering would go (nothing is created).
    Explain {
        /// The offering.
        #[arg(long)]
        offering: String,
        /// A choice for the offering, `name=value` (repeatable); `true`/`false` and whole
        /// numbers are typed, anything else is text.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Print the decision as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `name=value` as a typed parameter.
fn parse_choice(choice: &str) -> anyhow::Result<(String, Value)> {
    let Some((name, value)) = choice.split_once('=') else {
        bail!("--set takes NAME=VALUE, got '{choice}'");
    };
    let value = match value {
        "true" => json!(true),
        "false" => json!(false),
        v => v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n)),
    };
    Ok((name.to_string(), value))
}

/// The decision as text: the chosen provider, each parameter with its decision point, and
/// each candidate with its price and why it lost.
fn render(decision: &Value) -> String {
    let mut out = format!(
        "offering {} resource {}: {} in {}\n\nparameters:\n",
        decision["offering"].as_str().unwrap_or("?"),
        decision["resource"].as_str().unwrap_or("?"),
        decision["provider"].as_str().unwrap_or("?"),
        decision["region"].as_str().unwrap_or("?"),
    );
    for (name, param) in decision["params"].as_object().into_iter().flatten() {
        out.push_str(&format!(
            "  {name:<16} {:<16} {:<16} {}\n",
            param["value"].to_string().trim_matches('"'),
            param["set_by"].as_str().unwrap_or(""),
            param["source"].as_str().unwrap_or(""),
        ));
    }
    let rules = decision["rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !rules.is_empty() {
        out.push_str("\nrules:\n");
        for f in rules {
            out.push_str(&format!(
                "  {:<24} {:<10} {}\n",
                f["rule"].as_str().unwrap_or(""),
                f["effect"].as_str().unwrap_or(""),
                f["error"].as_str().unwrap_or(""),
            ));
        }
    }
    out.push_str("\ncandidates:\n");
    for c in decision["candidates"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<16} {:<16} {:<8} {}\n",
            c["provider"].as_str().unwrap_or(""),
            c["region"].as_str().unwrap_or(""),
            c["price"].as_str().unwrap_or("-"),
            c["lost"].as_str().unwrap_or("chosen"),
        ));
    }
    out.push_str(&format!(
        "\nplacement id: {}\n",
        decision["id"].as_str().unwrap_or("?")
    ));
    out
}

/// Runs a `placement` command.
pub(super) fn run(args: PlacementArgs) -> anyhow::Result<i32> {
    let client = Client::connect(args.gateway)?;
    let PlacementCommand::Explain {
        offering,
        set,
        json: as_json,
    } = args.command;
    let params: Map<String, Value> = set
        .iter()
        .map(|c| parse_choice(c))
        .collect::<anyhow::Result<_>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let decision = runtime.block_on(client.send(
        reqwest::Method::POST,
        "/v1/placement/explain",
        Some(json!({"offering": offering, "params": params})),
    ))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else if let Some(resources) = decision["resources"].as_array() {
        let texts: Vec<String> = resources.iter().map(render).collect();
        print!("{}", texts.join("\n"));
    } else {
        print!("{}", render(&decision));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_are_typed() {
        assert_eq!(parse_choice("a=b").unwrap(), ("a".into(), json!("b")));
        assert_eq!(parse_choice("n=3").unwrap(), ("n".into(), json!(3)));
        assert_eq!(parse_choice("f=true").unwrap(), ("f".into(), json!(true)));
        assert_eq!(parse_choice("x=a=b").unwrap(), ("x".into(), json!("a=b")));
        assert!(parse_choice("nothing").is_err());
    }
}
