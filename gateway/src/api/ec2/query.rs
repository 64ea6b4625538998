//! EC2 Query parameters: the flat `Name=value` pairs of a form body or query string, with
//! the conventions EC2 layers on top: 1-based lists (`InstanceId.1`), filters
//! (`Filter.N.Name`, `Filter.N.Value.M`), tags (`Tag.N.Key`, `Tag.N.Value`) and tag
//! specifications (`TagSpecification.N.ResourceType`, `TagSpecification.N.Tag.M.Key`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use skyport_core::text::{ascii_pieces, ascii_split_once};

use super::Ec2Error;

/// Parameters that belong to the signature or the protocol, not to the action.
fn is_protocol_param(name: &str) -> bool {
    name.starts_with("X-Amz-") || name == "Action" || name == "Version" || is_sigv2_param(name)
}

/// Whether `name` is one of Signature Version 2's parameters (the signing material, not
/// the action's).
pub fn is_sigv2_param(name: &str) -> bool {
    matches!(
        name,
        "AWSAccessKeyId"
            | "Signature"
            | "SignatureMethod"
            | "SignatureVersion"
            | "Timestamp"
            | "Expires"
    )
}

/// The one `Action` of a request whose URL query is `query` and whose form body is `form`
/// (empty for a GET).
///
/// The form must be UTF-8 (bytes that are not would make two different requests one cache
/// key) and `Action` must be given once: the call must run the action the cache and the
/// limits saw. Decoded only up to `Action` (and a second one), borrowed where nothing was
/// escaped: a cached read needs no more.
pub fn action<'a>(query: &'a str, form: &'a [u8]) -> Result<Cow<'a, str>, Ec2Error> {
    let Ok(form) = std::str::from_utf8(form) else {
        return Err(Ec2Error::invalid_value(
            "the request body is not valid UTF-8 (an EC2 Query form is URL-encoded text)",
        ));
    };
    let mut actions = raw_pairs(query)
        .chain(raw_pairs(form))
        .filter(|(name, _, _)| decoded_is(name, "Action"))
        .map(|(_, value, pair)| decoded_value(value, pair));
    let name = actions.next().ok_or_else(|| Ec2Error::missing("Action"))?;
    if actions.next().is_some() {
        return Err(Ec2Error::invalid_value(
            "Action is given more than once; give it once",
        ));
    }
    Ok(name)
}

/// The pairs of a form as `form_urlencoded` splits them (at `&`, then at the first `=`),
/// nothing decoded: each pair's raw name, raw value, and the whole pair.
fn raw_pairs(form: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    ascii_pieces(form, b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match ascii_split_once(pair, b'=') {
            Some((name, value)) => (name, value, pair),
            None => (pair, "", pair),
        })
}

/// Whether a raw part has escapes (`+` or `%XX`) to decode.
fn is_escaped(raw: &str) -> bool {
    raw.as_bytes().contains(&b'%') || raw.as_bytes().contains(&b'+')
}

/// Whether a pair's raw part (`+` and `%XX` not yet decoded) decodes to `expected`.
fn decoded_is(raw: &str, expected: &str) -> bool {
    if is_escaped(raw) {
        form_urlencoded::parse(raw.as_bytes())
            .next()
            .is_some_and(|(decoded, _)| decoded == expected)
    } else {
        raw == expected
    }
}

/// A pair's value, decoded: borrowed when nothing in it is escaped (`pair` is the whole
/// pair, decoded as `form_urlencoded` would when something is).
fn decoded_value<'a>(raw: &'a str, pair: &'a str) -> Cow<'a, str> {
    if is_escaped(raw) {
        let value = form_urlencoded::parse(pair.as_bytes())
            .next()
            .map(|(_, v)| v);
        return Cow::Owned(value.map(Cow::into_owned).unwrap_or_default());
    }
    Cow::Borrowed(raw)
}

/// One request's parameters (signature parameters removed).
#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
}

/// The most `Filter.N` one request may give.
pub const MAX_FILTERS: usize = 50;
/// The most values one filter may have (EC2's own limit).
pub const MAX_FILTER_VALUES: usize = 200;

/// One `Filter.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// `Filter.N.Name`.
    pub name: String,
    /// `Filter.N.Value.M`, in order.
    pub values: Vec<String>,
}

impl Filter {
    /// Whether `value` matches one of the filter's values (`*` and `?` wildcards, as on
    /// EC2).
    pub fn matches(&self, value: &str) -> bool {
        self.values.iter().any(|pattern| glob(pattern, value))
    }
}

/// `*` matches any run, `?` any one character; everything else literally.
fn glob(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Params {
    /// From decoded pairs; a repeated name keeps its last value.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            map: pairs.into_iter().collect(),
        }
    }

    /// The action's parameters of a request whose URL query is `query` and whose form body
    /// is `form`: both decoded, the signature's and protocol's own (`X-Amz-*`, `Action`,
    /// `Version`) left out.
    pub fn from_request(query: &str, form: &[u8]) -> Self {
        Self::from_pairs(
            form_urlencoded::parse(query.as_bytes())
                .chain(form_urlencoded::parse(form))
                .filter(|(k, _)| !is_protocol_param(k))
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        )
    }

    /// Every (name, value), sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// The value of `name`, or `MissingParameter`.
    pub fn required(&self, name: &str) -> Result<&str, Ec2Error> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Ec2Error::missing(name))
    }

    /// `name` as a boolean (`true`/`false`), default `default`.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, Ec2Error> {
        match self.get(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(Ec2Error::invalid_value(format!(
                "Value ({v}) for parameter {name} is invalid. Expected: 'true' or 'false'."
            ))),
        }
    }

    /// `name` as an integer in `range`.
    pub fn int(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, Ec2Error> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        v.parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                Ec2Error::invalid_value(format!(
                    "Value ({v}) for parameter {name} is invalid. Expected an integer from {} to {}.",
                    range.start(),
                    range.end()
                ))
            })
    }

    /// The numbered entries `prefix.N` (or, with a suffix, `prefix.N.suffix`) in N order.
    ///
    /// Only the names under `prefix.` are visited (a range of the sorted map), so reading
    /// every filter's values is linear in the parameters, not quadratic.
    fn numbered(&self, prefix: &str, suffix: &str) -> Vec<(u32, &str)> {
        let start = format!("{prefix}.");
        let mut out: Vec<(u32, &str)> = self
            .map
            .range::<str, _>((
                std::ops::Bound::Included(start.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(&start))
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(prefix)?.strip_prefix('.')?;
                let n = if suffix.is_empty() {
                    rest
                } else {
                    rest.strip_suffix(suffix)?.strip_suffix('.')?
                };
                Some((n.parse::<u32>().ok()?, v.as_str()))
            })
            .collect();
        out.sort_by_key(|(n, _)| *n);
        out
    }

    /// The list `prefix.1`, `prefix.2`, ...
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.numbered(prefix, "")
            .into_iter()
            .map(|(_, v)| v.to_string())
            .collect()
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> Result<Vec<Filter>, Ec2Error> {
        let named = self.numbered("Filter", "Name");
        if named.len() > MAX_FILTERS {
            return Err(Ec2Error::invalid_value(format!(
                "{} filters given; at most {MAX_FILTERS} are allowed",
                named.len()
            )));
        }
        named
            .into_iter()
            .map(|(n, name)| {
                let values = self.list(&format!("Filter.{n}.Value"));
                if values.is_empty() {
                    return Err(Ec2Error::invalid_value(format!(
                        "The filter '{name}' has no values"
                    )));
                }
                if values.len() > MAX_FILTER_VALUES {
                    return Err(Ec2Error::invalid_value(format!(
                        "The filter '{name}' has {} values; at most {MAX_FILTER_VALUES} are allowed",
                        values.len()
                    )));
                }
                Ok(Filter {
                    name: name.to_string(),
                    values,
                })
            })
            .collect()
    }

    /// Tags under `prefix` (`Tag`, or `TagSpecification.N.Tag`): `(key, value)`; the value
    /// is `None` when absent.
    pub fn tags(&self, prefix: &str) -> Vec<(String, Option<String>)> {
        self.numbered(prefix, "Key")
            .into_iter()
            .map(|(n, key)| {
                (
                    key.to_string(),
                    self.get(&format!("{prefix}.{n}.Value")).map(str::to_owned),
                )
            })
            .collect()
    }

    /// `TagSpecification.N` for `resource_type`: its tags. Other resource types are
    /// refused: only instances carry tags here.
    pub fn tag_specifications(
        &self,
        resource_type: &str,
        also: &[&str],
    ) -> Result<Vec<(String, String)>, Ec2Error> {
        let mut out = Vec::new();
        for (n, kind) in self.numbered("TagSpecification", "ResourceType") {
            let wanted = kind == resource_type;
            if !wanted && !also.contains(&kind) {
                return Err(Ec2Error::invalid_value(format!(
                    "'{kind}' is not a valid taggable resource type for this operation"
                )));
            }
            let tags = self.tags(&format!("TagSpecification.{n}.Tag"));
            if let Some((key, _)) = tags
                .iter()
                .find(|(k, _)| k.is_empty() || k.len() > 128 || k.starts_with("aws:"))
            {
                return Err(Ec2Error::invalid_value(format!(
                    "Tag key '{key}' for {kind} is invalid: 1-128 characters, not starting with aws:"
                )));
            }
            if wanted {
                out.extend(tags.into_iter().map(|(k, v)| (k, v.unwrap_or_default())));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &str) -> Params {
        Params::from_pairs(form_urlencoded::parse(s.as_bytes()).into_owned())
    }

    #[test]
    fn lists_filters_and_tags() {
        let p = params(
            "Action=DescribeInstances&InstanceId.2=i-b&InstanceId.1=i-a&InstanceId.10=i-j\
             &Filter.1.Name=tag%3AName&Filter.1.Value.1=vm1\
             &Filter.2.Name=instance-state-name&Filter.2.Value.2=pending&Filter.2.Value.1=running\
             &Tag.1.Key=env&Tag.1.Value=dev&Tag.2.Key=gone\
             &TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=vm1",
        );
        assert_eq!(p.list("InstanceId"), vec!["i-a", "i-b", "i-j"]);
        let filters = p.filters().unwrap();
        assert_eq!(filters[0].name, "tag:Name");
        assert_eq!(filters[1].values, vec!["running", "pending"]);
        assert_eq!(
            p.tags("Tag"),
            vec![("env".into(), Some("dev".into())), ("gone".into(), None)]
        );
        assert_eq!(
            p.tag_specifications("instance", &[]).unwrap(),
            vec![("Name".into(), "vm1".into())]
        );
        assert!(p.tag_specifications("volume", &[]).is_err());
        // Another resource type the action accepts: checked, its tags not the instance's.
        let both = params(
            "TagSpecification.1.ResourceType=volume&TagSpecification.1.Tag.1.Key=disk\
             &TagSpecification.2.ResourceType=instance&TagSpecification.2.Tag.1.Key=Name&TagSpecification.2.Tag.1.Value=vm1",
        );
        assert_eq!(
            both.tag_specifications("instance", &["volume"]).unwrap(),
            vec![("Name".to_string(), "vm1".to_string())]
        );
        let bad =
            params("TagSpecification.1.ResourceType=volume&TagSpecification.1.Tag.1.Key=aws%3Ax");
        assert!(bad.tag_specifications("instance", &["volume"]).is_err());
        assert_eq!(p.required("Nope").unwrap_err().code, "MissingParameter");
    }

    #[test]
    fn filters_past_ec2s_limits_are_refused_naming_the_limit() {
        let many: String = (1..=51)
            .map(|n| format!("Filter.{n}.Name=tag%3Ak{n}&Filter.{n}.Value.1=v&"))
            .collect();
        let refused = params(&many).filters().unwrap_err();
        assert!(
            refused.message.contains("at most 50"),
            "{}",
            refused.message
        );
        let wide: String = (1..=201)
            .map(|m| format!("Filter.1.Value.{m}=v{m}&"))
            .collect();
        let refused = params(&format!("Filter.1.Name=tag%3Ak&{wide}"))
            .filters()
            .unwrap_err();
        assert!(
            refused.message.contains("at most 200"),
            "{}",
            refused.message
        );
        // At the limits, every value is read, each in its filter.
        let full: String = (1..=50)
            .flat_map(|n| {
                std::iter::once(format!("Filter.{n}.Name=tag%3Ak{n}&"))
                    .chain((1..=200).map(move |m| format!("Filter.{n}.Value.{m}=v{n}-{m}&")))
            })
            .collect();
        let filters = params(&full).filters().unwrap();
        assert_eq!(filters.len(), 50);
        assert!(filters.iter().all(|f| f.values.len() == 200));
        assert_eq!(filters[9].values[199], "v10-200");
    }

    /// The raw scan finds the action `form_urlencoded` finds, escapes and all.
    #[test]
    fn the_action_is_the_one_a_form_parser_finds() {
        let reference = |query: &str, form: &[u8]| -> Vec<String> {
            form_urlencoded::parse(query.as_bytes())
                .chain(form_urlencoded::parse(form))
                .filter(|(k, _)| k == "Action")
                .map(|(_, v)| v.into_owned())
                .collect()
        };
        let forms: [&[u8]; 12] = [
            b"Action=DescribeRegions&Version=2016-11-15",
            b"Version=2016-11-15&Action=Describe%52egions",
            b"Action=a+b%2Bc%3D",
            b"Action=%E2%82%AC",
            b"Action=%zz&X=1",
            b"Act%69on=X",
            b"Action+=X&Action=Y",
            b"=Action&Action=",
            b"&&&Action=1&&",
            b"Action",
            b"action=x&ACTION=y",
            b"",
        ];
        for form in forms {
            for query in ["", "Action=Q", "X=%41ction"] {
                let expected = reference(query, form);
                match action(query, form) {
                    Ok(found) => assert_eq!(expected, [found.into_owned()], "{query} {form:?}"),
                    Err(_) => assert_ne!(expected.len(), 1, "{query} {form:?}"),
                }
            }
        }
    }

    #[test]
    fn the_action_is_read_once_from_text_and_kept_out_of_the_parameters() {
        assert_eq!(
            action("Action=DescribeRegions", b"").unwrap(),
            "DescribeRegions"
        );
        assert_eq!(
            action("", b"Version=2016-11-15&Action=Describe%52egions").unwrap(),
            "DescribeRegions"
        );
        assert_eq!(
            action("", b"Version=1").unwrap_err().code,
            "MissingParameter"
        );
        assert!(action("Action=A", b"Action=B")
            .unwrap_err()
            .message
            .contains("more than once"));
        // Escapes anywhere, in the name or the value, decode as a form's do.
        assert_eq!(
            action("", b"Act%69on=Run+Instances%21&Version=1").unwrap(),
            "Run Instances!"
        );
        assert_eq!(action("&&Action=A=B&", b"").unwrap(), "A=B");
        assert_eq!(action("Action", b"").unwrap(), "");
        assert!(action("Action=A", b"A%63tion=B")
            .unwrap_err()
            .message
            .contains("more than once"));
        assert!(action("", b"Action=A&x=\xff")
            .unwrap_err()
            .message
            .contains("not valid UTF-8"));
        let params = Params::from_request(
            "Action=RunInstances&X-Amz-Signature=abc&MinCount=1",
            b"Version=2016-11-15&ImageId=ami-1",
        );
        let names: Vec<&str> = params.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["ImageId", "MinCount"]);
    }

    #[test]
    fn wildcards() {
        let f = Filter {
            name: "tag:Name".into(),
            values: vec!["web-*".into(), "db-?".into()],
        };
        assert!(f.matches("web-1"));
        assert!(f.matches("web-"));
        assert!(f.matches("db-2"));
        assert!(!f.matches("db-22"));
        assert!(!f.matches("cache"));
    }
}
