//! The rate card: what each SKU costs, per provider, over time. Money is
//! `rust_decimal::Decimal`, never a float; prices are written as strings in the
//! configuration so that no digit is lost on the way in.

use rust_decimal::Decimal;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The SKU of API requests.
pub const API_REQUESTS: &str = "api.requests";

/// How a rate is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Unit {
    /// Per hour of running time, billed per millisecond.
    #[serde(rename = "hour")]
    Hour,
    /// Per 1,000 API requests.
    #[serde(rename = "1000-requests")]
    ThousandRequests,
}

impl Unit {
    /// The unit as the rate card writes it: `hour` or `1000-requests`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::ThousandRequests => "1000-requests",
        }
    }

    /// FOCUS `PricingUnit`.
    pub fn pricing_unit(self) -> &'static str {
        match self {
            Unit::Hour => "Hours",
            Unit::ThousandRequests => "1000 Requests",
        }
    }
}

/// One price, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateConfig {
    sku: String,
    #[serde(default = "any_provider")]
    provider: String,
    unit: Unit,
    price: String,
    #[serde(default)]
    valid_from: Option<String>,
    #[serde(default)]
    valid_to: Option<String>,
}

fn any_provider() -> String {
    "*".into()
}

/// One price.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// SKU: a Skyport instance type, or [`API_REQUESTS`].
    pub sku: String,
    /// Provider instance name, or `*` for any.
    pub provider: String,
    /// Unit.
    pub unit: Unit,
    /// Price per unit.
    pub price: Decimal,
    /// First instant it applies (inclusive).
    pub valid_from: OffsetDateTime,
    /// First instant it no longer applies, if any.
    pub valid_to: Option<OffsetDateTime>,
}

/// The rate card.
#[derive(Debug, Clone, PartialEq)]
pub struct RateCard {
    /// ISO 4217 currency code.
    pub currency: String,
    rates: Vec<Rate>,
}

/// Prices used when the configuration has no `rate_card`.
const EMBEDDED: &str = r#"{
  "currency": "USD",
  "rates": [
    {"sku": "sp.micro",  "unit": "hour", "price": "0.0100"},
    {"sku": "sp.small",  "unit": "hour", "price": "0.0200"},
    {"sku": "sp.medium", "unit": "hour", "price": "0.0400"},
    {"sku": "sp.large",  "unit": "hour", "price": "0.0800"},
    {"sku": "sp.micro",  "provider": "local-vmm", "unit": "hour", "price": "0.0050"},
    {"sku": "sp.small",  "provider": "local-vmm", "unit": "hour", "price": "0.0100"},
    {"sku": "sp.medium", "provider": "local-vmm", "unit": "hour", "price": "0.0200"},
    {"sku": "sp.large",  "provider": "local-vmm", "unit": "hour", "price": "0.0400"},
    {"sku": "api.requests", "unit": "1000-requests", "price": "0.0040"}
  ]
}"#;

fn parse_time(text: &str, what: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("{what} '{text}': {e}"))
}

impl RateCard {
    /// The embedded default card.
    pub fn embedded() -> Self {
        Self::from_json(&serde_json::from_str(EMBEDDED).expect("embedded rate card is JSON"))
            .expect("embedded rate card is valid")
    }

    /// A card from configuration: `{currency, rates: [{sku, provider?, unit, price,
    /// valid_from?, valid_to?}]}`.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct CardConfig {
            currency: String,
            rates: Vec<RateConfig>,
        }
        let card: CardConfig =
            serde_json::from_value(value.clone()).map_err(|e| format!("rate_card: {e}"))?;
        if card.currency.len() != 3 || !card.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "rate_card.currency '{}': use an ISO 4217 code such as USD",
                card.currency
            ));
        }
        let mut rates = Vec::new();
        for (i, r) in card.rates.into_iter().enumerate() {
            let at = |field: &str| format!("rate_card.rates[{i}].{field}");
            let price: Decimal = r.price.parse().map_err(|e| {
                format!(
                    "{} '{}': {e} (write prices as strings, e.g. \"0.0100\")",
                    at("price"),
                    r.price
                )
            })?;
            if price.is_sign_negative() {
                return Err(format!("{} must not be negative", at("price")));
            }
            let valid_from = match &r.valid_from {
                Some(t) => parse_time(t, &at("valid_from"))?,
                None => OffsetDateTime::UNIX_EPOCH,
            };
            let valid_to = r
                .valid_to
                .as_deref()
                .map(|t| parse_time(t, &at("valid_to")))
                .transpose()?;
            if valid_to.is_some_and(|to| to <= valid_from) {
                return Err(format!("{} must be after valid_from", at("valid_to")));
            }
            rates.push(Rate {
                sku: r.sku,
                provider: r.provider,
                unit: r.unit,
                price,
                valid_from,
                valid_to,
            });
        }
        Ok(Self {
            currency: card.currency,
            rates,
        })
    }

    /// The rate for `sku` at `provider` valid at `at`: a rate naming the provider beats
    /// `*`; among those, the latest `valid_from` wins.
    pub fn lookup(&self, sku: &str, provider: &str, at: OffsetDateTime) -> Result<&Rate, String> {
        self.rates
            .iter()
            .filter(|r| r.sku == sku && (r.provider == provider || r.provider == "*"))
            .filter(|r| r.valid_from <= at && r.valid_to.is_none_or(|to| at < to))
            .max_by_key(|r| (r.provider != "*", r.valid_from))
            .ok_or_else(|| {
                format!(
                    "no rate for {sku} at provider {provider} valid at {}; add one to the rate card",
                    at.format(&Rfc3339).unwrap_or_default()
                )
            })
    }

    /// Instants where some price starts or stops applying: usage is cut there.
    pub fn boundaries(&self) -> Vec<OffsetDateTime> {
        self.rates
            .iter()
            .flat_map(|r| [Some(r.valid_from), r.valid_to])
            .flatten()
            .filter(|t| *t != OffsetDateTime::UNIX_EPOCH)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn specific_providers_and_later_prices_win() {
        let card = RateCard::from_json(&serde_json::json!({
            "currency": "USD",
            "rates": [
                {"sku": "sp.micro", "unit": "hour", "price": "0.01"},
                {"sku": "sp.micro", "provider": "ec2", "unit": "hour", "price": "0.02"},
                {"sku": "sp.micro", "provider": "ec2", "unit": "hour", "price": "0.03",
                 "valid_from": "2026-12-01T00:00:00Z"}
            ]
        }))
        .unwrap();
        let at = |t| card.lookup("sp.micro", "ec2", t).unwrap().price.to_string();
        assert_eq!(at(datetime!(2026-11-30 23:59 UTC)), "0.02");
        assert_eq!(at(datetime!(2026-12-01 0:00 UTC)), "0.03");
        let local = card.lookup("sp.micro", "local-vmm", datetime!(2026-11-01 0:00 UTC));
        assert_eq!(local.unwrap().price.to_string(), "0.01");
        assert!(card
            .lookup("sp.huge", "ec2", datetime!(2026-11-01 0:00 UTC))
            .unwrap_err()
            .contains("no rate for sp.huge"));
        assert_eq!(card.boundaries(), [datetime!(2026-12-01 0:00 UTC)]);
    }

    #[test]
    fn bad_cards_name_the_field() {
        let bad = |rates: serde_json::Value| {
            RateCard::from_json(&serde_json::json!({"currency": "USD", "rates": rates}))
                .unwrap_err()
        };
        assert!(
            bad(serde_json::json!([{"sku": "x", "unit": "hour", "price": 0.1}]))
                .contains("rate_card")
        );
        assert!(
            bad(serde_json::json!([{"sku": "x", "unit": "hour", "price": "-1"}]))
                .contains("rates[0].price")
        );
        assert!(bad(serde_json::json!([{"sku": "x", "unit": "hour", "price": "1", "valid_from": "2026-12-01T00:00:00Z", "valid_to": "2026-11-01T00:00:00Z"}])).contains("valid_to"));
        assert!(RateCard::embedded()
            .lookup("sp.large", "local-vmm", OffsetDateTime::now_utc())
            .is_ok());
    }
}
