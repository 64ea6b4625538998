//! The EC2 Query parser: a request's URL query and form body to its `Action` and
//! parameters, then the EC2 conventions on top (lists, filters, tags, tag specifications)
//! and the tag rules both front doors apply. Never a panic; the limits always hold; and
//! the work stays linear (libFuzzer's `-timeout` catches a quadratic input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use skyport_domain::operations::instances::tags;
use skyport_gateway::api::ec2::query::{self, Params, MAX_FILTERS, MAX_FILTER_VALUES};

fuzz_target!(|data: &[u8]| {
    // The first line is the URL query, the rest the form body.
    let (url_query, form) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b""[..], data),
    };
    let Ok(url_query) = std::str::from_utf8(url_query) else {
        return;
    };
    if let Ok(action) = query::action(url_query, form) {
        assert!(
            std::str::from_utf8(form).is_ok(),
            "an action was read from a form that is not UTF-8"
        );
        let _ = action.len();
    }
    let params = Params::from_request(url_query, form);
    for (name, _) in params.iter() {
        assert!(
            name != "Action" && name != "Version" && !name.starts_with("X-Amz-"),
            "protocol parameter {name} reached the action"
        );
    }
    let _ = params.list("InstanceId");
    let _ = params.flag("DryRun", false);
    let _ = params.int("MaxResults", 5..=1000);
    if let Ok(filters) = params.filters() {
        assert!(filters.len() <= MAX_FILTERS);
        for filter in &filters {
            assert!(!filter.values.is_empty() && filter.values.len() <= MAX_FILTER_VALUES);
            let _ = filter.matches("i-0123456789abcdef0");
            let _ = filter.matches(&filter.name);
        }
    }
    let mut tag_sets = vec![params.tags("Tag")];
    if let Ok(specified) = params.tag_specifications("instance", &["volume", "network-interface"]) {
        tag_sets.push(specified.into_iter().map(|(k, v)| (k, Some(v))).collect());
    }
    for set in tag_sets {
        let map: Map<String, Value> = set
            .into_iter()
            .map(|(k, v)| (k, Value::String(v.unwrap_or_default())))
            .collect();
        if tags::check(&map).is_ok() {
            assert!(map.len() <= tags::MAX_TAGS);
            for (key, value) in &map {
                assert!(!key.is_empty() && key.chars().count() <= tags::MAX_KEY_CHARS);
                assert!(!key.contains('\0'), "a NUL in a tag key was accepted");
                let value = value.as_str().unwrap_or_default();
                assert!(value.chars().count() <= tags::MAX_VALUE_CHARS);
            }
        }
    }
    let _ = tags::check_name(params.get("Name"));
});
