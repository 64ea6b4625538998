//! What Skyport reads from a verified JWT.

use serde::Deserialize;

/// Claims Skyport reads from a verified token.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TokenClaims {
    /// Subject (user or service).
    pub sub: String,
    /// Tenant (required).
    pub tenant: String,
    /// Department inside the tenant.
    #[serde(default)]
    pub dept: Option<String>,
    /// Roles, e.g. `admin`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Expiry, seconds since the epoch.
    #[serde(deserialize_with = "numeric_date")]
    pub exp: u64,
    /// Not before, seconds since the epoch, when the token says.
    #[serde(default, deserialize_with = "optional_numeric_date")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch, when the token says.
    #[serde(default, deserialize_with = "optional_numeric_date")]
    pub iat: Option<u64>,
    /// Token id, when the token has one.
    #[serde(default)]
    pub jti: Option<String>,
    /// Issuer (required: the verifier refuses a token without it).
    #[serde(default)]
    pub iss: Option<String>,
    /// Audience (required, as `iss`).
    #[serde(default)]
    pub aud: Option<Audience>,
    /// What the token is for, when it is not an API token: `console-sign-in` for a
    /// one-time development sign-in link (`skyport console`), refused by the API.
    #[serde(default)]
    pub skyport_use: Option<String>,
}

/// A token's `aud`: one audience, or several (RFC 7519 section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience(pub Vec<String>);

impl Audience {
    /// Whether `audience` is one of the token's.
    pub fn names(&self, audience: &str) -> bool {
        self.0.iter().any(|a| a == audience)
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = Audience;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an audience or a list of audiences")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Audience, E> {
                Ok(Audience(vec![s.to_string()]))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Audience, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Audience(names))
            }
        }
        d.deserialize_any(Names)
    }
}

/// [`TokenClaims::skyport_use`] of a development console sign-in link.
pub const CONSOLE_SIGN_IN: &str = "console-sign-in";

/// A JWT NumericDate (RFC 7519 section 2): seconds since the epoch, which may carry a
/// fraction; Skyport judges whole seconds, so the fraction is dropped. Read straight from
/// the number (no buffering, as an untagged enum would): every new token's dates pass
/// here.
struct NumericDate(u64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seconds;
        impl serde::de::Visitor<'_> for Seconds {
            type Value = NumericDate;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("seconds since the epoch")
            }

            fn visit_u64<E: serde::de::Error>(self, s: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(s))
            }

            fn visit_i64<E: serde::de::Error>(self, s: i64) -> Result<NumericDate, E> {
                u64::try_from(s).map(NumericDate).map_err(|_| {
                    E::custom(format!("a date must be seconds since the epoch, not {s}"))
                })
            }

            fn visit_f64<E: serde::de::Error>(self, s: f64) -> Result<NumericDate, E> {
                if s.is_finite() && s >= 0.0 {
                    Ok(NumericDate(s.floor() as u64))
                } else {
                    Err(E::custom(format!(
                        "a date must be seconds since the epoch, not {s}"
                    )))
                }
            }
        }
        d.deserialize_any(Seconds)
    }
}

fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    NumericDate::deserialize(d).map(|date| date.0)
}

fn optional_numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<NumericDate>::deserialize(d).map(|date| date.map(|date| date.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(dates: &str) -> Result<TokenClaims, serde_json::Error> {
        serde_json::from_str(&format!(r#"{{"sub": "u", "tenant": "t", {dates}}}"#))
    }

    #[test]
    fn dates_may_carry_a_fraction_of_a_second() {
        let c = claims(r#""exp": 1795433941.75, "nbf": 1795433000.5"#).unwrap();
        assert_eq!((c.exp, c.nbf), (1_795_433_941, Some(1_795_433_000)));
        let c = claims(r#""exp": 1795433941"#).unwrap();
        assert_eq!((c.exp, c.nbf), (1_795_433_941, None));
    }

    #[test]
    fn the_audience_is_one_name_or_a_list_of_them() {
        let one = claims(r#""exp": 1, "aud": "skyport""#).unwrap();
        assert!(one.aud.unwrap().names("skyport"));
        let many = claims(r#""exp": 1, "aud": ["a", "skyport"]"#).unwrap();
        let aud = many.aud.unwrap();
        assert!(aud.names("skyport") && aud.names("a") && !aud.names("b"));
        assert!(claims(r#""exp": 1, "aud": 7"#).is_err());
        assert!(claims(r#""exp": 1, "aud": ["a", 7]"#).is_err());
        assert!(claims(r#""exp": 1"#).unwrap().aud.is_none());
    }

    #[test]
    fn negative_or_textual_dates_are_refused() {
        assert!(claims(r#""exp": -1.5"#).is_err());
        assert!(claims(r#""exp": -1"#).is_err());
        assert!(claims(r#""exp": "tomorrow""#).is_err());
        assert!(claims(r#""exp": 1795433941, "iat": null"#).is_ok());
        assert!(claims(r#""exp": 1795433941, "nbf": "soon""#).is_err());
    }
}
