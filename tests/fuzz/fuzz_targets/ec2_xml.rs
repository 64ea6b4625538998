//! The EC2 XML writer: whatever text a caller stored (tag values, names, key names) or
//! sent (echoed in an error message), the document is well-formed XML 1.0 that an XML
//! parser reads back to the same text, only characters XML cannot carry replaced by
//! U+FFFD. One bad value must never make a whole `DescribeInstances` unreadable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quick_xml::events::Event;
use skyport_gateway::api::ec2::xml::{error_document, Xml};

fuzz_target!(|texts: Vec<String>| {
    let texts: Vec<&str> = texts.iter().map(String::as_str).take(32).collect();
    let request_id = texts.first().copied().unwrap_or("");
    let document = Xml::response("DescribeInstances", request_id, |x| {
        x.set("reservationSet", texts.iter(), |x, text| {
            x.leaf("instanceId", text);
            x.elem("tagSet", |x| {
                x.elem("item", |x| {
                    x.leaf("key", text);
                    x.opt("value", Some(text));
                });
            });
        });
    });
    let mut expected = vec![request_id];
    if texts.is_empty() {
        // The empty `<reservationSet></reservationSet>` reads as one empty leaf.
        expected.push("");
    }
    for text in &texts {
        expected.extend([*text, *text, *text]);
    }
    assert_eq!(read_back(&document), replaced(&expected));
    let message = texts.get(1).copied().unwrap_or("");
    let error = error_document("InvalidParameterValue", message, request_id);
    assert_eq!(
        read_back(&error),
        replaced(&["InvalidParameterValue", message, request_id])
    );
});

/// `texts` as the writer must emit them: characters XML 1.0 cannot carry as U+FFFD.
fn replaced(texts: &[&str]) -> Vec<String> {
    texts
        .iter()
        .map(|t| {
            t.chars()
                .map(|c| if xml_char(c) { c } else { '\u{FFFD}' })
                .collect()
        })
        .collect()
}

/// XML 1.0's `Char` production.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Every leaf's text, in document order, after checking that the document is well-formed
/// and carries only XML characters.
fn read_back(document: &str) -> Vec<String> {
    assert!(
        document.chars().all(xml_char),
        "a character XML cannot carry: {document:?}"
    );
    let mut reader = quick_xml::Reader::from_str(document);
    reader.config_mut().check_end_names = true;
    let mut leaves = Vec::new();
    let mut text: Option<String> = None;
    let mut depth = 0usize;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(_) => {
                depth += 1;
                text = Some(String::new());
            }
            Event::Text(t) => {
                let decoded = t.decode().expect("UTF-8 text");
                let unescaped = quick_xml::escape::unescape(&decoded).expect("escaped text");
                text.get_or_insert_with(String::new).push_str(&unescaped);
            }
            Event::GeneralRef(r) => {
                let name = r.decode().expect("UTF-8 reference");
                let resolved = match &*name {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "apos" => "'",
                    "quot" => "\"",
                    other => panic!("an unknown entity &{other};"),
                };
                text.get_or_insert_with(String::new).push_str(resolved);
            }
            Event::End(_) => {
                depth = depth.checked_sub(1).expect("balanced elements");
                if let Some(t) = text.take() {
                    leaves.push(t);
                }
            }
            Event::Eof => break,
            Event::Decl(_) => {}
            other => panic!("unexpected XML event {other:?}"),
        }
    }
    assert_eq!(depth, 0, "unclosed elements");
    leaves
}
