//! EC2 XML responses in the 2016-11-15 shapes botocore's service model reads: root
//! `<{Action}Response xmlns=...>`, lowerCamel element names, lists as `<fooSet><item>`,
//! and `<requestId>`; errors as `<Response><Errors><Error>`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

/// The API version and namespace Skyport answers in.
pub const API_VERSION: &str = "2016-11-15";
const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// `text` with every character XML 1.0 cannot carry (control characters other than tab,
/// line feed and carriage return; U+FFFE, U+FFFF) replaced by U+FFFD, so that no stored
/// value can make a document a client cannot parse.
fn xml_text(text: &str) -> std::borrow::Cow<'_, str> {
    let invalid = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    };
    if text.chars().any(invalid) {
        std::borrow::Cow::Owned(
            text.chars()
                .map(|c| if invalid(c) { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A small XML writer: elements nest through closures, text is always escaped.
pub struct Xml {
    out: String,
}

impl Xml {
    /// A response document for `action`, ending with `requestId`.
    pub fn response(action: &str, request_id: &str, body: impl FnOnce(&mut Xml)) -> String {
        let mut x = Xml {
            out: String::with_capacity(1024),
        };
        x.out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        x.out
            .push_str(&format!(r#"<{action}Response xmlns="{NAMESPACE}">"#));
        x.leaf("requestId", request_id);
        body(&mut x);
        x.out.push_str(&format!("</{action}Response>"));
        x.out
    }

    /// `<tag>text</tag>`.
    pub fn leaf(&mut self, tag: &str, text: impl AsRef<str>) {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self.out
            .push_str(&quick_xml::escape::escape(xml_text(text.as_ref()).as_ref()));
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    /// `<tag>text</tag>` when `text` is present.
    pub fn opt(&mut self, tag: &str, text: Option<impl AsRef<str>>) {
        if let Some(text) = text {
            self.leaf(tag, text);
        }
    }

    /// `<tag>...</tag>` with children written by `children`.
    pub fn elem(&mut self, tag: &str, children: impl FnOnce(&mut Xml)) {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        children(self);
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    /// `<tag><item>...</item>...</tag>`, one item per element of `items`.
    pub fn set<T>(
        &mut self,
        tag: &str,
        items: impl IntoIterator<Item = T>,
        mut item: impl FnMut(&mut Xml, T),
    ) {
        self.elem(tag, |x| {
            for i in items {
                x.elem("item", |x| item(x, i));
            }
        });
    }
}

/// `id` (visible ASCII: a request id) as element text, escaped where it needs to be; the
/// ids Skyport makes (UUIDs) need nothing, and are not copied.
pub fn id_text(id: &str) -> std::borrow::Cow<'_, str> {
    if id.bytes().any(|b| b"<>&'\"".contains(&b)) {
        quick_xml::escape::escape(id)
    } else {
        std::borrow::Cow::Borrowed(id)
    }
}

/// Where a response document spells its request id: the text of its first
/// `<requestId>`, which [`Xml::response`] writes before anything else.
pub fn request_id_in(document: &[u8]) -> Option<std::ops::Range<usize>> {
    const OPEN: &[u8] = b"<requestId>";
    const CLOSE: &[u8] = b"</requestId>";
    let start = document.windows(OPEN.len()).position(|w| w == OPEN)? + OPEN.len();
    let len = document[start..]
        .windows(CLOSE.len())
        .position(|w| w == CLOSE)?;
    Some(start..start + len)
}

/// The content type of every EC2 response.
pub const CONTENT_TYPE: &str = "text/xml;charset=UTF-8";

/// A 200 XML response.
pub fn ok(body: String) -> Response<Full<Bytes>> {
    xml_response(StatusCode::OK, body)
}

/// An XML response with `status`.
pub fn xml_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

/// The EC2 error envelope.
pub fn error_document(code: &str, message: &str, request_id: &str) -> String {
    let mut x = Xml {
        out: String::with_capacity(256),
    };
    x.out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    x.elem("Response", |x| {
        x.elem("Errors", |x| {
            x.elem("Error", |x| {
                x.leaf("Code", code);
                x.leaf("Message", message);
            })
        });
        x.leaf("RequestID", request_id);
    });
    x.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_xml_cannot_carry_are_replaced_not_written() {
        let doc = Xml::response("DescribeTags", "r-1", |x| {
            x.leaf("value", "a\u{0}b\u{1b}c\td\u{FFFF}");
        });
        assert!(
            doc.contains("<value>a\u{FFFD}b\u{FFFD}c\td\u{FFFD}</value>"),
            "{doc}"
        );
    }

    #[test]
    fn a_document_says_where_its_request_id_is() {
        let doc = Xml::response("DescribeTags", "r&1", |x| x.leaf("requestId", "later"));
        let at = request_id_in(doc.as_bytes()).unwrap();
        assert_eq!(&doc[at.clone()], "r&amp;1", "the first one, as written");
        assert_eq!(
            &doc[at],
            id_text("r&1"),
            "as a cached answer's reader's id is written"
        );
        assert!(matches!(
            id_text("0190c2a4-5e7b-7c3d-9a1b-2c3d4e5f6a7b"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(request_id_in(b"<a><requestId>unclosed</a>"), None);
        assert_eq!(
            request_id_in(error_document("X", "y", "r").as_bytes()),
            None
        );
    }

    #[test]
    fn documents_nest_and_escape() {
        let doc = Xml::response("DescribeTags", "r-1", |x| {
            x.set("tagSet", [("a<b", "x&y")], |x, (k, v)| {
                x.leaf("key", k);
                x.leaf("value", v);
            })
        });
        assert_eq!(
            doc,
            r#"<?xml version="1.0" encoding="UTF-8"?><DescribeTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-1</requestId><tagSet><item><key>a&lt;b</key><value>x&amp;y</value></item></tagSet></DescribeTagsResponse>"#
        );
        assert!(error_document("AuthFailure", "no <key>", "r-2")
            .contains("<Code>AuthFailure</Code><Message>no &lt;key&gt;</Message>"));
    }
}
